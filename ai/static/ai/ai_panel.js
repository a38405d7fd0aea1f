/*
 * The conversation page's AI panel: while a summary or suggestions are being made, fetch the panel again
 * every two seconds until they are done (or failed), and let "Use" copy a suggestion into the send box
 * above: a text into the message box, a template into the template choice and its value fields. Nothing is
 * sent; the operator edits and presses Send.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var MAX_POLLS = 300;  // ten minutes; a request still pending by then says so in the panel
  var polls = 0;
  var timer = null;

  function panelBody() {
    return document.getElementById("ai-panel-body");
  }

  function schedule() {
    var body = panelBody();
    if (!body || body.getAttribute("data-pending") !== "true" || timer !== null || polls >= MAX_POLLS) {
      return;
    }
    timer = window.setTimeout(refresh, POLL_MS);
  }

  function refresh() {
    timer = null;
    polls += 1;
    var body = panelBody();
    if (!body) {
      return;
    }
    fetch(body.getAttribute("data-poll-url"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the panel answered " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        body.outerHTML = html;
        schedule();
      })
      .catch(function () {
        schedule();  // a network hiccup: try again at the next tick
      });
  }

  function filled(field) {
    field.classList.add("ai-filled");
    window.setTimeout(function () { field.classList.remove("ai-filled"); }, 1500);
    field.focus();
    field.scrollIntoView({block: "center"});
  }

  // The send box's own script (whatsapp/conversation.js) fills it: a text into the message box, a template
  // into the template choice with its value fields.
  function use(button) {
    var box = window.waSendBox;
    if (!box) {
      return;
    }
    var template = button.getAttribute("data-template");
    if (!template) {
      filled(box.useText(button.getAttribute("data-text") || ""));
      return;
    }
    var variables = {};
    try {
      variables = JSON.parse(button.getAttribute("data-variables") || "{}");
    } catch (error) {
      variables = {};
    }
    box.useTemplate(template, variables).then(filled, function (error) { window.alert(error.message); });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-ai-use]") : null;
    if (button) {
      event.preventDefault();
      use(button);
    }
  });

  schedule();
})();
