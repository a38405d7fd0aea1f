/*
 * The template form's parts that follow what the author does: the buttons list ("Add a button" reveals or
 * copies a row, "Remove" takes it out, each row shows the boxes its type uses), the example boxes beside
 * the body's parameters (one per parameter, as they are typed), and the header example shown only when the
 * header has something to give an example for. Without JavaScript the page still works: every box is
 * shown, with a few empty button rows.
 * Everything it changes fires an "input" event, so template_preview.js redraws the preview.
 */
(function () {
  "use strict";

  var PARAMETER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
  var MEDIA = ["IMAGE", "VIDEO", "DOCUMENT"];

  function changed(element) {
    element.dispatchEvent(new Event("input", {bubbles: true}));
  }

  function namesIn(text) {
    var names = [];
    String(text || "").replace(PARAMETER, function (whole, name) {
      if (names.indexOf(name) < 0) {
        names.push(name);
      }
      return whole;
    });
    var positional = names.length && names.every(function (name) { return /^\d+$/.test(name); });
    return positional ? names.sort(function (a, b) { return Number(a) - Number(b); }) : names;
  }

  // --- buttons ---------------------------------------------------------------------------------------

  function part(row, name) {
    return row.querySelector("[name$='-" + name + "']");
  }

  function removed(row) {
    var box = part(row, "remove");
    return Boolean(box && box.checked);
  }

  function showRowParts(row) {
    var type = part(row, "type").value;
    row.dataset.type = type;
    var url = part(row, "url").value;
    row.dataset.example = type === "COPY_CODE" || (type === "URL" && url.indexOf("{{") >= 0) ? "1" : "";
  }

  function renumber(list) {
    var rows = Array.prototype.slice.call(list.querySelectorAll(".tpl-button-row"));
    var shown = rows.filter(function (row) { return !row.hidden; });
    shown.forEach(function (row, position) {
      row.querySelector(".tpl-row-number").textContent = String(position + 1);
    });
    list.querySelector(".tpl-no-buttons").hidden = shown.length > 0;
    list.querySelector(".tpl-add-button").disabled = shown.length >= Number(list.dataset.max || 10);
  }

  function addRow(list) {
    var rows = Array.prototype.slice.call(list.querySelectorAll(".tpl-button-row"));
    var row = rows.filter(function (candidate) { return candidate.hidden && !removed(candidate); })[0];
    if (!row) {
      var last = rows[rows.length - 1];
      var index = 1 + Math.max.apply(null, rows.map(function (candidate) { return Number(candidate.dataset.index); }));
      row = last.cloneNode(true);
      row.dataset.index = String(index);
      row.classList.remove("tpl-row-invalid");
      row.removeAttribute("aria-invalid");
      Array.prototype.forEach.call(row.querySelectorAll("[name]"), function (input) {
        input.name = input.name.replace(/-\d+-(\w+)$/, "-" + index + "-$1");
        if (input.type === "checkbox") {
          input.checked = false;
        } else {
          input.value = "";
        }
      });
      list.insertBefore(row, list.querySelector(".tpl-add-button"));
      addRemoveButton(list, row);
    }
    var type = part(row, "type");
    if (!type.value) {
      type.value = "QUICK_REPLY";
    }
    row.hidden = false;
    showRowParts(row);
    renumber(list);
    changed(type);
    part(row, "text").focus();
  }

  function removeRow(list, row) {
    part(row, "remove").checked = true;
    row.hidden = true;
    renumber(list);
    changed(part(row, "remove"));
    list.querySelector(".tpl-add-button").focus();
  }

  // "Remove" becomes a button; the ticked box it sets is what the server reads.
  function addRemoveButton(list, row) {
    var old = row.querySelector(".tpl-remove-button");
    if (old) {
      old.parentNode.removeChild(old);  // a copied row's button still removes the row it was copied from
    }
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button tpl-remove-button";
    remove.textContent = "Remove";
    remove.addEventListener("click", function () { removeRow(list, row); });
    row.appendChild(remove);
  }

  function setUpButtons(list) {
    list.classList.add("tpl-js");
    Array.prototype.forEach.call(list.querySelectorAll(".tpl-button-row"), function (row) {
      row.hidden = row.classList.contains("tpl-row-empty") || removed(row);
      showRowParts(row);
      addRemoveButton(list, row);
    });
    list.addEventListener("input", function (event) {
      var row = event.target.closest(".tpl-button-row");
      if (row) {
        showRowParts(row);
      }
    });
    list.addEventListener("change", function (event) {
      var row = event.target.closest(".tpl-button-row");
      if (row) {
        showRowParts(row);
      }
    });
    var add = list.querySelector(".tpl-add-button");
    add.hidden = false;
    add.addEventListener("click", function () { addRow(list); });
    renumber(list);
  }

  // --- example boxes beside the parameters -------------------------------------------------------------

  function syncParameters(box) {
    var source = document.getElementById(box.dataset.source);
    var names = namesIn(source ? source.value : "");
    var labels = {};
    Array.prototype.forEach.call(box.querySelectorAll(".tpl-parameter"), function (label) {
      labels[label.dataset.parameter] = label;
      label.hidden = names.indexOf(label.dataset.parameter) < 0;
    });
    names.forEach(function (name) {
      var label = labels[name];
      if (!label) {
        label = document.createElement("label");
        label.className = "tpl-parameter";
        label.dataset.parameter = name;
        var tag = document.createElement("span");
        tag.className = "tpl-parameter-tag";
        tag.textContent = "{{" + name + "}}";
        var input = document.createElement("input");
        input.type = "text";
        input.name = box.dataset.name + "-" + name;
        label.appendChild(tag);
        label.appendChild(document.createTextNode(" "));
        label.appendChild(input);
      }
      box.appendChild(label);  // (re)placed in the parameters' order
    });
    box.querySelector(".tpl-no-parameters").hidden = names.length > 0;
  }

  // --- the header example ----------------------------------------------------------------------------

  function rowOf(name) {
    return document.querySelector(".form-row.field-" + name);
  }

  function syncHeader() {
    var format = document.getElementById("id_header_format");
    var text = document.getElementById("id_header_text");
    var example = rowOf("header_example");
    var textRow = rowOf("header_text");
    if (!format) {
      return;
    }
    var value = format.value;
    if (textRow) {
      // A text left on a media header stays visible: validation says to remove it.
      textRow.hidden = value !== "TEXT" && !(text && text.value) && !textRow.classList.contains("errors");
    }
    if (example) {
      var needed = MEDIA.indexOf(value) >= 0 || (value === "TEXT" && text && namesIn(text.value).length > 0);
      example.hidden = !needed && !example.classList.contains("errors");
      var input = document.getElementById("id_header_example");
      if (input) {
        input.placeholder = MEDIA.indexOf(value) >= 0 ? "https://example.com/sample." + (
          value === "IMAGE" ? "jpg" : value === "VIDEO" ? "mp4" : "pdf") : "";
      }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll(".tpl-button-rows"), setUpButtons);
    Array.prototype.forEach.call(document.querySelectorAll(".tpl-parameter-values"), function (box) {
      var source = document.getElementById(box.dataset.source);
      if (source) {
        source.addEventListener("input", function () { syncParameters(box); });
        syncParameters(box);
      }
    });
    ["id_header_format", "id_header_text"].forEach(function (id) {
      var element = document.getElementById(id);
      if (element) {
        element.addEventListener("input", syncHeader);
        element.addEventListener("change", syncHeader);
      }
    });
    syncHeader();
  });
})();
