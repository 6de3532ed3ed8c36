// Small accessible dialogs (a <dialog> element): ask for a name, confirm.

const $ = (id) => document.getElementById(id);

$("dialog-cancel").addEventListener("click", () => $("dialog").close("cancel"));

function open({ label, value, message, input }) {
  const dialog = $("dialog");
  $("dialog-label").textContent = label;
  $("dialog-message").textContent = message ?? "";
  const field = $("dialog-input");
  field.hidden = !input;
  field.value = value ?? "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? field.value.trim() : null), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    if (input) {
      field.focus();
      field.setSelectionRange(field.value.length, field.value.length);
    } else {
      $("dialog-ok").focus();
    }
  });
}

export async function ask(label, value) {
  const v = await open({ label, value, input: true });
  return v ? v : null;
}

export async function confirmDialog(message) {
  const v = await open({ label: "Are you sure?", message, input: false });
  return v !== null;
}
