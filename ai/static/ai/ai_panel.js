/*
 * The conversation page's AI panel: while a summary or suggestions are being made, fetch the panel again
 * every two seconds until they are done (or failed), and let "Use" copy a suggestion into the send form
 * below: a text into the text box, a template into the template choice and its values. Nothing is sent;
 * the operator edits and presses Send.
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

  function choose(form, kind) {
    var radio = form.querySelector('input[name="kind"][value="' + kind + '"]');
    if (radio && !radio.checked) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", {bubbles: true}));
    }
  }

  function filled(field, value) {
    field.value = value;
    field.dispatchEvent(new Event("input", {bubbles: true}));
    field.classList.add("ai-filled");
    window.setTimeout(function () { field.classList.remove("ai-filled"); }, 1500);
  }

  function use(button) {
    var form = document.querySelector("#send-message form");
    if (!form) {
      return;
    }
    var template = button.getAttribute("data-template");
    var target;
    if (template) {
      var select = form.querySelector('select[name="template"]');
      var variables = form.querySelector('textarea[name="variables"], input[name="variables"]');
      if (!select || !variables) {
        return;
      }
      select.value = template;
      if (select.value !== template) {
        window.alert("This template is no longer among the number's approved templates.");
        return;
      }
      choose(form, "template");
      filled(variables, button.getAttribute("data-variables") || "{}");
      target = variables;
    } else {
      target = form.querySelector('textarea[name="text"], input[name="text"]');
      if (!target) {
        return;
      }
      choose(form, "text");
      filled(target, button.getAttribute("data-text") || "");
    }
    target.focus();
    target.scrollIntoView({block: "center"});
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
