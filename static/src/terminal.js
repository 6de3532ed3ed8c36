// xterm.js and its fit addon, loaded when the terminal is first shown so a
// first visit does not pay for it.
export { Terminal } from "@xterm/xterm";
export { FitAddon } from "@xterm/addon-fit";
