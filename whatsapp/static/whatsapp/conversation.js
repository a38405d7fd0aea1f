/*
 * The conversation page (admin/whatsapp/conversation/page.html).
 *
 * - The transcript refreshes itself: every few seconds (data-poll-ms) it asks for the chat's rows with the
 *   digest it last got; when something changed (a new message, a tick, a downloaded file) only the rows that
 *   differ are replaced, so a playing voice note or a selection in an unchanged bubble stays as it is.
 *   It stays at the bottom if the operator was there, and pauses while the tab is hidden.
 * - The send box: a saved reply is copied into the message box; choosing a template fetches its value
 *   fields, and the preview under them fills in as they are typed; Ctrl+Enter (or Cmd+Enter) sends.
 * - window.waSendBox lets other panels (the AI's "Use" buttons) fill the box the same way.
 *
 * Without this script everything still works with a page load each: Preview shows a template's fields.
 * When the sign-in has expired (the admin answers with its login page), the page says so and stops asking,
 * and what was typed stays in the box.
 */
(function () {
  "use strict";

  var page = document.getElementById("wa-page");
  if (!page) {
    return;
  }
  var transcript = document.getElementById("wa-transcript");
  var rows = document.getElementById("wa-rows");
  var state = document.getElementById("wa-state");
  var pollMs = Number(page.getAttribute("data-poll-ms")) || 3000;
  var transcriptUrl = page.getAttribute("data-transcript-url");
  var etag = null;
  var timer = null;
  var stopped = false;
  var NEW_MARK_MS = 4000;
  var served = {};  // each row's HTML as the server last sent it, by the row's id

  function signedOut() {
    stopped = true;
    if (timer !== null) {
      window.clearTimeout(timer);
      timer = null;
    }
    if (document.getElementById("wa-signed-out")) {
      return;
    }
    var notice = document.createElement("p");
    notice.id = "wa-signed-out";
    notice.className = "errornote";
    notice.setAttribute("role", "alert");
    notice.textContent = "You are signed out, so this page no longer updates and cannot send. Copy what you " +
      "typed, then reload the page to sign in again.";
    page.insertBefore(notice, page.firstChild);
  }

  // The admin answers a request whose sign-in expired with its login page (a redirect, then HTML).
  function isSignIn(response) {
    return response.redirected || response.url.indexOf("/login/") !== -1;
  }

  // --- the transcript ------------------------------------------------------------------------------------

  function nearBottom() {
    return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
  }

  function toBottom() {
    transcript.scrollTop = transcript.scrollHeight;
  }

  function parsed(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    return Array.prototype.filter.call(holder.childNodes, function (node) {
      return node.nodeType === 1;
    });
  }

  function remember() {
    served = {};
    Array.prototype.forEach.call(rows.children, function (row) {
      if (row.id) {
        served[row.id] = row.outerHTML;
      }
    });
  }

  function merge(html) {
    var stick = nearBottom();
    var old = {};
    Array.prototype.forEach.call(rows.children, function (row) {
      if (row.id) {
        old[row.id] = row;
      }
    });
    var fresh = parsed(html);
    var nowServed = {};
    var merged = fresh.map(function (row) {
      var kept = row.id ? old[row.id] : null;
      if (row.id) {
        nowServed[row.id] = row.outerHTML;
      }
      // Compared with what the server sent before, not with the element (the page marks new rows).
      if (kept && served[row.id] === row.outerHTML) {
        return kept;
      }
      if (row.id && !kept) {
        row.classList.add("wa-new");
        window.setTimeout(function () { row.classList.remove("wa-new"); }, NEW_MARK_MS);
      }
      return row;
    });
    var changed = merged.length !== rows.children.length || merged.some(function (row, index) {
      return rows.children[index] !== row;
    });
    if (changed) {
      var fragment = document.createDocumentFragment();
      merged.forEach(function (row) { fragment.appendChild(row); });
      rows.replaceChildren(fragment);
      if (stick) {
        toBottom();
      }
    }
    served = nowServed;
    var empty = transcript.querySelector(".wa-empty");
    if (empty) {
      empty.hidden = merged.length > 0;
    }
  }

  function schedule() {
    if (timer === null && !stopped && !document.hidden && transcriptUrl) {
      timer = window.setTimeout(refresh, pollMs);
    }
  }

  function refresh() {
    timer = null;
    var headers = {"Accept": "application/json"};
    if (etag) {
      headers["If-None-Match"] = etag;
    }
    fetch(transcriptUrl, {credentials: "same-origin", headers: headers, cache: "no-cache"})
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        if (isSignIn(response) || response.status === 403) {
          signedOut();
          return null;
        }
        if (!response.ok) {
          throw new Error("the transcript answered " + response.status);
        }
        etag = response.headers.get("ETag");
        return response.json();
      })
      .then(function (body) {
        if (body) {
          merge(body.rows);
          if (state && state.innerHTML.trim() !== body.state.trim()) {
            state.innerHTML = body.state;
          }
        }
        schedule();
      })
      .catch(function () {
        schedule();  // a network hiccup or a restart: try again at the next tick
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden && timer !== null) {
      window.clearTimeout(timer);
      timer = null;
    } else if (!document.hidden && !stopped) {
      refresh();
    }
  });

  if (transcript && rows) {
    if (!window.location.hash || window.location.hash === "#send-message") {
      toBottom();
    }
    remember();
    schedule();
  }

  // --- the send box --------------------------------------------------------------------------------------

  var form = document.getElementById("wa-send-form");
  if (!form) {
    return;
  }
  var text = form.querySelector('textarea[name="text"]');
  var saved = form.querySelector('select[name="saved_reply"]');
  var template = form.querySelector('select[name="template"]');
  var fields = document.getElementById("wa-template-fields");
  var sendButton = document.getElementById("wa-send-button");

  function insertText(value) {
    if (!text.value.trim()) {
      text.value = value;
    } else {
      // At the caret, replacing a selection; a box never focused inserts at the end.
      var focused = typeof text.selectionStart === "number" && document.activeElement === text;
      var start = focused ? text.selectionStart : text.value.length;
      var end = focused ? text.selectionEnd : start;
      var before = text.value.slice(0, start);
      var spaced = before && !/\s$/.test(before) ? " " + value : value;
      text.value = before + spaced + text.value.slice(end);
    }
    text.dispatchEvent(new Event("input", {bubbles: true}));
    text.focus();
  }

  if (saved) {
    // The saved replies' texts, read from the option list the server gave (data-text on each option).
    saved.addEventListener("change", function () {
      var option = saved.options[saved.selectedIndex];
      if (option && option.getAttribute("data-text") !== null) {
        insertText(option.getAttribute("data-text"));
      }
      saved.value = "";  // copied: the box holds it now, and the operator may edit it
    });
  }

  function fillPreview() {
    var preview = document.getElementById("wa-template-preview");
    if (!preview) {
      return;
    }
    var body = preview.getAttribute("data-body") || "";
    preview.textContent = body.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, function (whole, name) {
      var input = fields.querySelector('[name="body__' + name + '"]');
      return input && input.value ? input.value : whole;
    });
  }

  var fieldsWanted = 0;  // the latest template asked for: an older answer arriving late is dropped

  function loadFields(templateId, values) {
    var asked = ++fieldsWanted;
    if (!templateId) {
      fields.innerHTML = "";
      return Promise.resolve();
    }
    var url = form.getAttribute("data-fields-url") + "?template=" + encodeURIComponent(templateId);
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (isSignIn(response) || response.status === 403) {
          signedOut();
          throw new Error("You are signed out; reload the page to sign in again.");
        }
        if (!response.ok) {
          throw new Error("The template's fields could not be loaded (" + response.status + "); press Preview.");
        }
        return response.text();
      })
      .then(function (html) {
        if (asked !== fieldsWanted) {
          return;
        }
        fields.innerHTML = html;
        Object.keys(values || {}).forEach(function (name) {
          var input = fields.querySelector('[name="' + name + '"]');
          if (input) {
            input.value = values[name];
          }
        });
        fillPreview();
        var first = fields.querySelector("input");
        if (first) {
          first.focus();
        }
      });
  }

  if (template && fields) {
    template.addEventListener("change", function () {
      loadFields(template.value, {}).catch(function (error) {
        fields.innerHTML = "";
        var note = document.createElement("p");
        note.className = "errornote";
        note.textContent = error.message;
        fields.appendChild(note);
      });
    });
    fields.addEventListener("input", fillPreview);
    fillPreview();
  }

  form.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && sendButton) {
      event.preventDefault();
      sendButton.click();
    }
  });

  // Values in the shape a send takes ({"header": {...}, "body": {...} or [...], "buttons": {...}}) as the
  // names of the template's fields.
  function fieldValues(variables) {
    var values = {};
    ["header", "body"].forEach(function (section) {
      var given = (variables || {})[section];
      if (Array.isArray(given)) {
        given.forEach(function (value, index) { values[section + "__" + (index + 1)] = value; });
      } else if (given && typeof given === "object") {
        Object.keys(given).forEach(function (name) {
          values[name === "url" && section === "header" ? "header_url" : section + "__" + name] = given[name];
        });
      }
    });
    var buttons = (variables || {}).buttons || {};
    Object.keys(buttons).forEach(function (index) { values["button__" + index] = buttons[index]; });
    return values;
  }

  window.waSendBox = {
    useText: function (value) {
      if (template && template.value) {
        template.value = "";
        fields.innerHTML = "";
      }
      text.value = "";
      insertText(value);
      return text;
    },
    useTemplate: function (templateId, variables) {
      template.value = String(templateId);
      if (template.value !== String(templateId)) {
        return Promise.reject(new Error("This template is no longer among the number's approved templates."));
      }
      return loadFields(template.value, fieldValues(variables)).then(function () { return template; });
    }
  };
})();
