// The provider add page: once a kind is picked, only its ids and credentials stay in view, each with what it
// means for that kind. Without this script every kind's fields show, each saying which kinds use it.
(function () {
  "use strict";
  const data = document.getElementById("provider-kind-fields");
  const kindSelect = document.getElementById("id_kind");
  if (!data || !kindSelect) {
    return;
  }
  const kinds = JSON.parse(data.textContent);
  const names = new Set(Object.values(kinds).flatMap((fields) => Object.keys(fields)));
  const groups = document.querySelectorAll("fieldset.provider-kind-ids, fieldset.provider-kind-options");

  function rowOf(name) {
    return document.querySelector(".form-row.field-" + name) ||
      document.querySelector(".field-" + name)?.closest(".form-row");
  }

  // The help each field had (every kind's meanings), kept to put back when no kind is picked.
  const allKindsHelp = new Map();
  names.forEach((name) => {
    const help = rowOf(name)?.querySelector(".help");
    if (help) {
      allKindsHelp.set(name, help.textContent);
    }
  });

  function show() {
    const fields = kinds[kindSelect.value];
    names.forEach((name) => {
      const row = rowOf(name);
      if (!row) {
        return;
      }
      row.hidden = Boolean(fields) && !(name in fields);
      const help = row.querySelector(".help");
      if (help && allKindsHelp.has(name)) {
        help.textContent = fields && fields[name] ? fields[name] + "." : allKindsHelp.get(name);
      }
    });
    groups.forEach((group) => {
      group.hidden = !group.querySelector(".form-row:not([hidden])");
      const note = group.querySelector(".description");
      if (note) {
        note.hidden = Boolean(fields);
      }
    });
  }

  kindSelect.addEventListener("change", show);
  show();
}());
