// The notebook's file: an .ipynb (nbformat 4) in /workspace, read at the
// first hello, saved shortly after each change and on Ctrl+S. A save lands
// only if the file still has the version this tab last read or wrote (the
// agent checks), so another tab's save is never overwritten unknowingly:
// the page asks, and loses nothing.

const $ = (id) => document.getElementById(id);

export function toSource(s) {
  return Array.isArray(s) ? s.join("") : (s ?? "");
}

// The page's cells from a notebook (null: none on disk yet); cells of
// other types (raw) are not shown.
export function cellsOf(nb, newId) {
  return (nb?.cells ?? [])
    .filter((c) => c.cell_type === "code" || c.cell_type === "markdown")
    .map((c) => ({
      id: c.id ?? newId(), cell_type: c.cell_type, source: toSource(c.source),
      outputs: (c.outputs ?? []).map((o) => ({ ...o })), execution_count: c.execution_count ?? null,
    }));
}

// The notebook of the page's cells; `source(cell)` is a cell's text now.
export function toNotebook(cells, source) {
  const output = (o) => {
    const { el, ...rest } = o;
    return rest;
  };
  return {
    cells: cells.map((c) => c.cell_type === "code"
      ? { cell_type: "code", id: c.id, metadata: {}, source: source(c), outputs: c.outputs.map(output), execution_count: c.execution_count ?? null }
      : { cell_type: "markdown", id: c.id, metadata: {}, source: source(c) }),
    metadata: {
      kernelspec: { name: "python3", display_name: "Python 3 (ipykernel)", language: "python" },
      language_info: { name: "python" },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

export class NotebookFile {
  // `text()` is the notebook to save, as text.
  constructor(conn, path, text) {
    this.conn = conn;
    this.path = path;
    this.text = text;
    // Undefined for a notebook not yet on disk.
    this.version = undefined;
    this.conflict = false;
    this.timer = null;
    // Saves run one after another, so each carries the version the one
    // before it got back (two in flight would refuse each other as
    // another tab's).
    this.saving = Promise.resolve();
    $("conflict-reload").addEventListener("click", () => location.reload());
    $("conflict-keep").addEventListener("click", () => this.save(true));
  }

  // The notebook on disk, or null when there is none; throws any other
  // error.
  async read() {
    try {
      const f = await this.conn.request({ type: "file.read", path: this.path });
      this.version = f.version;
      return JSON.parse(f.data);
    } catch (e) {
      if (e.code === "not_found") return null;
      throw e;
    }
  }

  scheduleSave() {
    if (this.conflict) return;
    $("saved").textContent = "unsaved changes";
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.save(), 800);
  }

  save(force = false) {
    clearTimeout(this.timer);
    this.saving = this.saving.then(() => this.saveNow(force));
    return this.saving;
  }

  async saveNow(force) {
    try {
      const frame = { type: "file.write", path: this.path, data: this.text() };
      if (!force && this.version) frame.ifVersion = this.version;
      this.version = (await this.conn.request(frame)).version;
      this.conflict = false;
      $("conflict").hidden = true;
      $("saved").textContent = "saved";
    } catch (e) {
      if (e.code === "file_changed") {
        // Another tab (or a program) saved it since: ask, lose nothing.
        this.conflict = true;
        $("saved").textContent = "changed in another tab";
        $("conflict").hidden = false;
        return;
      }
      $("saved").textContent = `not saved: ${e.message}`;
    }
  }
}
