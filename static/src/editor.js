// The editor: CodeMirror 6 with a state per open file (its own undo
// history), highlighting chosen by extension, light and dark themes that
// follow the system.
//
// What a first visit does not need before the editor takes keys is loaded
// after: each language's grammar when a file of it is shown (the text is
// plain until then, a few milliseconds), search (Mod-f loads it on first
// use; it is fetched anyway once the page is idle), the dark theme only in
// dark mode. The JavaScript evaluated before the editor shows is what a
// first visit waits on (docs/speed.md).

import { EditorState, Compartment, Prec } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  drawSelection, highlightSpecialChars, rectangularSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
  indentUnit, foldGutter, foldKeymap, StreamLanguage,
} from "@codemirror/language";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";

/// Which grammar a path's extension names (null: plain text).
function languageName(path) {
  const ext = path.split(".").pop().toLowerCase();
  switch (ext) {
    case "py": return "python";
    case "js": case "mjs": case "cjs": case "jsx": return "javascript";
    case "ts": case "tsx": return "typescript";
    case "sh": case "bash": return "shell";
    case "go": return "go";
    default: return null;
  }
}

const loaders = {
  python: async () => (await import("@codemirror/lang-python")).python(),
  javascript: async () => (await import("@codemirror/lang-javascript")).javascript(),
  typescript: async () => (await import("@codemirror/lang-javascript")).javascript({ typescript: true }),
  shell: async () => stream((await import("@codemirror/legacy-modes/mode/shell")).shell),
  go: async () => stream((await import("@codemirror/legacy-modes/mode/go")).go),
};

function stream(mode) {
  return StreamLanguage.define(mode);
}

const loaded = new Map(); // name -> support, once loaded
const loading = new Map(); // name -> promise of it

/// A path's language support, loading its grammar once ([] for plain text).
export function loadLanguage(path) {
  const name = languageName(path);
  if (!name) return Promise.resolve([]);
  if (!loading.has(name)) {
    loading.set(name, loaders[name]().then((support) => {
      loaded.set(name, support);
      return support;
    }));
  }
  return loading.get(name);
}

/// The support if it is already loaded, else [] (plain until it is).
function languageNow(path) {
  return loaded.get(languageName(path)) ?? [];
}

let searchLoading = null;
function loadSearch() {
  if (!searchLoading) searchLoading = import("@codemirror/search");
  return searchLoading;
}

/// The search keys before search is loaded: the first use loads it and
/// runs the command it names.
const lazySearchKeys = [
  ["Mod-f", "openSearchPanel"], ["F3", "findNext"], ["Mod-g", "findNext"],
  ["Shift-F3", "findPrevious"], ["Mod-Shift-g", "findPrevious"],
  ["Mod-Alt-g", "gotoLine"], ["Mod-d", "selectNextOccurrence"],
  ["Mod-Shift-l", "selectSelectionMatches"],
].map(([key, command]) => ({
  key,
  preventDefault: true,
  run: (view) => {
    loadSearch().then((m) => m[command](view));
    return true;
  },
}));

const dark = window.matchMedia("(prefers-color-scheme: dark)");

export class Editor {
  constructor(parent, { onChange, onRun, onSave }) {
    this.theme = new Compartment();
    this.lang = new Compartment();
    this.search = new Compartment();
    this.states = new Map();
    this.path = null;
    this.darkTheme = null; // loaded the first time the system is dark
    this.searchLoaded = null; // search's keys and matches, once loaded
    this.onChange = onChange;
    const runKeys = Prec.highest(keymap.of([
      { key: "Mod-Enter", run: () => { onRun(); return true; } },
      { key: "Mod-s", run: () => { onSave(); return true; }, preventDefault: true },
    ]));
    this.base = [
      runKeys,
      lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(),
      foldGutter(), drawSelection(), indentOnInput(), bracketMatching(), closeBrackets(),
      rectangularSelection(), highlightActiveLine(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      indentUnit.of("    "),
      keymap.of([
        ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap,
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
    dark.addEventListener("change", () => this.followTheme());
    if (dark.matches) this.followTheme();
    // Search, once the page has nothing more urgent to do.
    const later = window.requestIdleCallback ?? ((f) => setTimeout(f, 500));
    later(() => loadSearch().then(({ searchKeymap, highlightSelectionMatches }) => {
      this.searchLoaded = [keymap.of(searchKeymap), highlightSelectionMatches()];
      this.reconfigureAll(this.search.reconfigure(this.searchLoaded));
    }));
  }

  extensions(path) {
    return [
      this.base, this.lang.of(languageNow(path)),
      this.search.of(this.searchLoaded ?? keymap.of(lazySearchKeys)),
      this.theme.of(dark.matches && this.darkTheme ? this.darkTheme : []),
    ];
  }

  /// Light or dark as the system is (the dark theme loaded when first needed).
  async followTheme() {
    if (dark.matches && !this.darkTheme) this.darkTheme = (await import("@codemirror/theme-one-dark")).oneDark;
    this.reconfigureAll(this.theme.reconfigure(dark.matches ? this.darkTheme : []));
  }

  /// Applies `effects` to the shown state and every held one.
  reconfigureAll(effects) {
    for (const [path, state] of this.states) {
      if (path !== this.path) this.states.set(path, state.update({ effects }).state);
    }
    this.view.dispatch({ effects });
  }

  /// Gives `path`'s state its grammar once loaded (it stayed plain meanwhile).
  highlight(path) {
    if (!languageName(path) || loaded.has(languageName(path))) return;
    loadLanguage(path).then((support) => {
      const effects = this.lang.reconfigure(support);
      if (path === this.path) this.view.dispatch({ effects });
      else if (this.states.has(path)) this.states.set(path, this.states.get(path).update({ effects }).state);
    });
  }

  /// Shows a file, making its state on first open.
  show(path, text) {
    if (this.path) this.states.set(this.path, this.view.state);
    let state = this.states.get(path);
    if (!state) {
      state = EditorState.create({ doc: text ?? "", extensions: this.extensions(path) });
      this.states.set(path, state);
      this.highlight(path);
    }
    this.path = path;
    this.view.setState(state);
    this.view.contentDOM.setAttribute("aria-readonly", "false");
  }

  /// Holds a file's text without showing it (it was just written here).
  seed(path, text) {
    if (this.states.has(path)) return;
    this.states.set(path, EditorState.create({ doc: text, extensions: this.extensions(path) }));
    this.highlight(path);
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
    this.highlight(to);
    if (this.path === from) {
      this.path = null;
      this.show(to);
    }
  }

  focus() {
    this.view.focus();
  }
}
