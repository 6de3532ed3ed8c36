// The IDE page: files, tabs, the editor, Run with input, the terminal,
// and the session's clock. Talks to the server over one socket
// (docs/protocol.md), output as binary frames.

import "./ide.css";
import { conn } from "./ide/status.js";
import { state, store } from "./ide/store.js";
import { renderTabs } from "./ide/tabs.js";
import { selectPanel } from "./ide/terminal.js";
import "./ide/tree.js";
import "./ide/run.js";
import "./ide/exercises.js";


renderTabs();
conn.connect();
if (store.get("panel", "output") === "terminal") {
  // Open once connected, so the shell can be re-attached.
  const wait = setInterval(() => {
    if (conn.open && state.status === "ready") {
      clearInterval(wait);
      selectPanel("terminal");
    }
  }, 50);
}
