// The page's store: this browser's saved choices and drafts (localStorage,
// scoped per exercise) and the page's state.

export const $ = (id) => document.getElementById(id);

/// On an exercise's page: its id (its own workspace, tabs and drafts).
export const exercise = document.body.dataset.exercise || null;
export const scope = exercise ? `replbox.x.${exercise}.` : "replbox.";
export const store = {
  get(key, fallback) {
    try {
      const v = localStorage.getItem(`${scope}${key}`);
      return v === null ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`${scope}${key}`, JSON.stringify(value));
    } catch { /* full or disabled: drafts are a convenience */ }
  },
  remove(key) {
    try { localStorage.removeItem(`${scope}${key}`); } catch { /* ignore */ }
  },
};

export const state = {
  status: "connecting",
  languages: [],
  expiresAt: null,
  tabs: store.get("tabs", []),
  active: store.get("active", null),
  dirty: new Set(),
  saving: new Map(),
  saveTimers: new Map(),
  // Each open file's version as this tab last read or wrote it: a save
  // lands only if the file still has it (see docs/protocol.md).
  versions: new Map(),
  // Files another tab or a program saved since this tab's copy: their
  // saves wait until the student picks Reload or Keep mine.
  conflicts: new Set(),
  tree: new Map(),
  expanded: new Set(store.get("expanded", [])),
  selected: null,
  run: null,
  shellJob: null,
  lastSeq: new Map(),
  loadedOnce: false,
};
