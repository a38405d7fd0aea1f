// While a campaign runs, its page asks for the counts every few seconds and moves the bar and figures.
(function () {
  "use strict";
  const EVERY_MS = 4000;

  function update(data) {
    data.bar.forEach(function (part) {
      const piece = document.querySelector('.cmp-bar [data-part="' + part.key + '"]');
      if (piece) {
        piece.style.width = part.percent + "%";
        piece.title = part.label + ": " + part.count;
      }
      const figure = document.querySelector('[data-count="' + part.key + '"]');
      if (figure) figure.textContent = part.count;
    });
    ["replied", "converted", "opted_out", "sms"].forEach(function (key) {
      const figure = document.querySelector('[data-count="' + key + '"]');
      if (figure) figure.textContent = data.counts[key];
    });
    const label = document.getElementById("cmp-status-label");
    if (label) label.textContent = data.status_label;
    return data.status === "running";
  }

  function poll(live) {
    fetch(live.dataset.progressUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && update(data)) {
          setTimeout(function () { poll(live); }, EVERY_MS);
        } else if (data) {
          live.textContent = "finished: reload for the results";
        }
      })
      .catch(function () { setTimeout(function () { poll(live); }, EVERY_MS * 2); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const live = document.getElementById("cmp-live");
    if (live) setTimeout(function () { poll(live); }, EVERY_MS);
  });
})();
