// The editor: CodeMirror 6 with a state per open file (its own undo
// history), highlighting chosen by extension, light and dark themes that
// follow the system.

import { EditorState, Compartment, Prec } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  drawSelection, highlightSpecialChars, rectangularSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
  StreamLanguage, indentUnit, foldGutter, foldKeymap,
} from "@codemirror/language";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { python } from "@codemirror/lang-python";
import { javascript } from "@codemirror/lang-javascript";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { go } from "@codemirror/legacy-modes/mode/go";
import { oneDark } from "@codemirror/theme-one-dark";

export function languageFor(path) {
  const ext = path.split(".").pop().toLowerCase();
  switch (ext) {
    case "py": return python();
    case "js": case "mjs": case "cjs": case "jsx": return javascript();
    case "ts": case "tsx": return javascript({ typescript: true });
    case "sh": case "bash": return StreamLanguage.define(shell);
    case "go": return StreamLanguage.define(go);
    default: return [];
  }
}

const dark = window.matchMedia("(prefers-color-scheme: dark)");

export class Editor {
  constructor(parent, { onChange, onRun, onSave }) {
    this.theme = new Compartment();
    this.states = new Map();
    this.path = null;
    this.onChange = onChange;
    const runKeys = Prec.highest(keymap.of([
      { key: "Mod-Enter", run: () => { onRun(); return true; } },
      { key: "Mod-s", run: () => { onSave(); return true; }, preventDefault: true },
    ]));
    this.base = [
      runKeys,
      lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(),
      foldGutter(), drawSelection(), indentOnInput(), bracketMatching(), closeBrackets(),
      rectangularSelection(), highlightActiveLine(), highlightSelectionMatches(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      indentUnit.of("    "),
      keymap.of([
        ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
        ...foldKeymap, indentWithTab,
      ]),
      EditorView.updateListener.of((u) => {
        if (u.docChanged && this.path) this.onChange(this.path, u.state.doc.toString());
      }),
      EditorView.contentAttributes.of({ "aria-label": "Code editor" }),
    ];
    this.view = new EditorView({
      parent,
      state: EditorState.create({ doc: "", extensions: this.extensions("") }),
    });
    this.view.contentDOM.setAttribute("aria-readonly", "true");
    dark.addEventListener("change", () => this.view.dispatch({
      effects: this.theme.reconfigure(dark.matches ? oneDark : []),
    }));
  }

  extensions(path) {
    return [this.base, languageFor(path), this.theme.of(dark.matches ? oneDark : [])];
  }

  /// Shows a file, making its state on first open.
  show(path, text) {
    if (this.path) this.states.set(this.path, this.view.state);
    let state = this.states.get(path);
    if (!state) {
      state = EditorState.create({ doc: text ?? "", extensions: this.extensions(path) });
      this.states.set(path, state);
    }
    this.path = path;
    this.view.setState(state);
    this.view.contentDOM.setAttribute("aria-readonly", "false");
  }

  /// Holds a file's text without showing it (it was just written here).
  seed(path, text) {
    if (!this.states.has(path)) this.states.set(path, EditorState.create({ doc: text, extensions: this.extensions(path) }));
  }

  /// Replaces a file's text (after a reload from the sandbox), keeping it undoable.
  replace(path, text) {
    const state = this.states.get(path);
    if (!state) return;
    if (path === this.path) {
      this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } });
    } else {
      this.states.set(path, state.update({ changes: { from: 0, to: state.doc.length, insert: text } }).state);
    }
  }

  text(path) {
    if (path === this.path) return this.view.state.doc.toString();
    return this.states.get(path)?.doc.toString();
  }

  forget(path) {
    this.states.delete(path);
    if (this.path === path) {
      this.path = null;
      this.view.setState(EditorState.create({ doc: "", extensions: this.extensions("") }));
      this.view.contentDOM.setAttribute("aria-readonly", "true");
    }
  }

  rename(from, to) {
    if (from === this.path) this.states.set(from, this.view.state);
    const state = this.states.get(from);
    if (!state) return;
    this.states.delete(from);
    this.states.set(to, EditorState.create({ doc: state.doc.toString(), extensions: this.extensions(to) }));
    if (this.path === from) {
      this.path = null;
      this.show(to);
    }
  }

  focus() {
    this.view.focus();
  }
}
