/*
 * The live preview beside the template form: redraws the WhatsApp-style bubble from the header, body,
 * footer and buttons fields as the author types, with the example values filled in. It mirrors
 * templates_app/preview.py (the server-side preview of read-only templates): a parameter without an
 * example value stays visible as {{name}}, so the author sees what is missing.
 */
(function () {
  "use strict";

  var PARAMETER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
  var FIELDS = ["header_format", "header_text", "body_text", "footer_text", "buttons", "examples"];

  function field(name) {
    return document.getElementById("id_" + name);
  }

  function text(name) {
    var element = field(name);
    return element ? element.value : "";
  }

  function parsed(name, fallback, problems) {
    var raw = text(name).trim();
    if (!raw) {
      return fallback;
    }
    try {
      return JSON.parse(raw);
    } catch (error) {
      problems.push(name.replace("_", " ") + ": not valid JSON yet");
      return fallback;
    }
  }

  // {"1": "Ana"} by name, or ["Ana", "1042"] for {{1}}, {{2}}...
  function valuesOf(raw) {
    var values = {};
    if (Array.isArray(raw)) {
      raw.forEach(function (value, index) { values[String(index + 1)] = String(value); });
    } else if (raw && typeof raw === "object") {
      Object.keys(raw).forEach(function (key) { values[key] = String(raw[key]); });
    }
    return values;
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
    var problems = [];
    var examples = parsed("examples", {}, problems);
    examples = examples && typeof examples === "object" && !Array.isArray(examples) ? examples : {};
    var buttons = parsed("buttons", [], problems);
    var headerFormat = text("header_format");
    show(root.querySelector(".tpl-header-media"),
         headerFormat && headerFormat !== "TEXT" ? "[" + headerFormat.toLowerCase() + "]" : "");
    show(root.querySelector(".tpl-header"),
         headerFormat === "TEXT" ? fill(text("header_text"), valuesOf(examples.header)) : "");
    root.querySelector(".tpl-body").textContent = fill(text("body_text"), valuesOf(examples.body));
    show(root.querySelector(".tpl-footer"), text("footer_text"));
    drawButtons(root.querySelector(".tpl-buttons"), buttons, valuesOf(examples.buttons));
    show(root.querySelector(".tpl-preview-problem"), problems.join("; "));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("tpl-preview");
    if (!root || !root.dataset.live || !field("body_text")) {
      return;  // a read-only template: the server drew its preview
    }
    var redraw = function () { draw(root); };
    FIELDS.forEach(function (name) {
      var element = field(name);
      if (element) {
        element.addEventListener("input", redraw);
        element.addEventListener("change", redraw);
      }
    });
    redraw();
  });
})();
