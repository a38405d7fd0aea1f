/*
 * The live preview beside the template form: redraws the WhatsApp-style bubble from the header, body,
 * footer and buttons fields as the author types, with the example values filled in. It mirrors
 * templates_app/preview.py (the server-side preview of read-only templates): a parameter without an
 * example value stays visible as {{name}}, so the author sees what is missing.
 */
(function () {
  "use strict";

  var PARAMETER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

  function field(name) {
    return document.getElementById("id_" + name);
  }

  function text(name) {
    var element = field(name);
    return element ? element.value : "";
  }

  function firstParameter(template) {
    var match = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/.exec(template || "");
    return match ? match[1] : "";
  }

  // {name: value} from the example boxes beside a text's parameters (those still in the text).
  function parameterValues(name) {
    var values = {};
    var box = field(name);
    Array.prototype.forEach.call(box ? box.querySelectorAll(".tpl-parameter") : [], function (label) {
      var input = label.querySelector("input");
      if (!label.hidden && input && input.value) {
        values[label.dataset.parameter] = input.value;
      }
    });
    return values;
  }

  // The buttons as the server keeps them: rows neither empty nor removed, with their example values.
  function buttonRows() {
    var list = field("buttons");
    var rows = [];
    Array.prototype.forEach.call(list ? list.querySelectorAll(".tpl-button-row") : [], function (row) {
      var value = function (part) {
        var input = row.querySelector("[name$='-" + part + "']");
        return input ? (input.type === "checkbox" ? (input.checked ? "1" : "") : input.value) : "";
      };
      var button = {type: value("type"), text: value("text"), url: value("url"),
                    phone_number: value("phone_number"), example: value("example")};
      var empty = !(button.type || button.text || button.url || button.phone_number || button.example);
      if (!empty && !value("remove")) {
        rows.push(button);
      }
    });
    return rows;
  }

  function fill(template, values) {
    return String(template || "").replace(PARAMETER, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole;
    });
  }

  function show(element, content) {
    element.textContent = content;
    element.hidden = !content;
  }

  function buttonDetail(button, value) {
    var kind = String(button.type || "").toUpperCase();
    if (kind === "URL") {
      return String(button.url || "").replace(PARAMETER, function (whole) { return value || whole; });
    }
    if (kind === "PHONE_NUMBER") {
      return String(button.phone_number || "");
    }
    return kind === "COPY_CODE" ? (value || "") : "";
  }

  function drawButtons(container, buttons, values) {
    container.textContent = "";
    (Array.isArray(buttons) ? buttons : []).forEach(function (button, index) {
      if (!button || typeof button !== "object") {
        return;
      }
      var kind = String(button.type || "").toUpperCase();
      var element = document.createElement("div");
      element.className = "tpl-button tpl-button-" + kind.toLowerCase();
      element.textContent = button.text || (kind === "COPY_CODE" ? "Copy code" : kind);
      var detail = buttonDetail(button, values[String(index)]);
      if (detail) {
        var small = document.createElement("small");
        small.textContent = detail;
        element.appendChild(small);
        element.title = detail;
      }
      container.appendChild(element);
    });
  }

  function draw(root) {
    var buttons = buttonRows();
    var buttonValues = {};
    buttons.forEach(function (button, index) { buttonValues[String(index)] = button.example; });
    var headerFormat = text("header_format");
    var headerText = text("header_text");
    var headerValues = {};
    headerValues[firstParameter(headerText)] = text("header_example");
    show(root.querySelector(".tpl-header-media"),
         headerFormat && headerFormat !== "TEXT" ? "[" + headerFormat.toLowerCase() + "]" : "");
    show(root.querySelector(".tpl-header"), headerFormat === "TEXT" ? fill(headerText, headerValues) : "");
    root.querySelector(".tpl-body").textContent = fill(text("body_text"), parameterValues("body_examples"));
    show(root.querySelector(".tpl-footer"), text("footer_text"));
    drawButtons(root.querySelector(".tpl-buttons"), buttons, buttonValues);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("tpl-preview");
    if (!root || !root.dataset.live || !field("body_text")) {
      return;  // a read-only template: the server drew its preview
    }
    var redraw = function () { draw(root); };
    // Listened to on the form: button rows and example boxes come and go as the author works.
    var form = field("body_text").form;
    form.addEventListener("input", redraw);
    form.addEventListener("change", redraw);
    redraw();
  });
})();
