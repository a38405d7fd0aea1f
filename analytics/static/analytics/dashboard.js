// Draws the dashboard's charts from the JSON the page carries (id "wa-dashboard-data").
(function () {
  "use strict";

  function cssColor(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function label(bucket, grain) {
    var at = new Date(bucket);
    if (grain === "hour") {
      return at.toLocaleString(undefined, {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
    }
    return at.toLocaleDateString(undefined, {month: "short", day: "numeric"});
  }

  function minutes(seconds) {
    return seconds === null ? null : Math.round(seconds / 6) / 10;
  }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) { return null; }
    config.options = Object.assign({responsive: true, maintainAspectRatio: false, animation: false}, config.options);
    return new window.Chart(canvas, config);
  }

  function breakdown(figure, rows, key, palette) {
    var box = document.querySelector('[data-needs="' + figure + '"]');
    if (!rows.length) {
      box.querySelector(".wa-canvas").hidden = true;
      box.querySelector(".wa-empty").hidden = false;
      return;
    }
    draw("chart-" + figure, {
      type: "bar",
      data: {labels: rows.map(function (r) { return r[key]; }),
             datasets: [{label: "Messages", data: rows.map(function (r) { return r.count; }),
                         backgroundColor: palette}]},
      options: {indexAxis: "y", plugins: {legend: {display: false}}}
    });
  }

  function start() {
    var source = document.getElementById("wa-dashboard-data");
    if (!source || !window.Chart) { return; }
    var data = JSON.parse(source.textContent);
    var text = cssColor("--body-fg", "#333");
    window.Chart.defaults.color = text;
    window.Chart.defaults.borderColor = cssColor("--hairline-color", "#ddd");
    var blue = "#2f6fb3", green = "#3a9b5c", amber = "#d08a1e", red = "#c0392b", grey = "#8a8f98";
    var labels = data.series.map(function (row) { return label(row.bucket, data.grain); });
    var column = function (key) { return data.series.map(function (row) { return row[key]; }); };

    draw("chart-volume", {
      type: "bar",
      data: {labels: labels, datasets: [
        {label: "Received", data: column("received"), backgroundColor: blue},
        {label: "Sent", data: column("sent"), backgroundColor: green},
        {label: "Failed", data: column("failed"), backgroundColor: red}
      ]},
      options: {scales: {y: {beginAtZero: true, ticks: {precision: 0}}}}
    });
    draw("chart-funnel", {
      type: "bar",
      data: {labels: data.funnel.map(function (row) { return row.step; }),
             datasets: [{label: "Messages", data: data.funnel.map(function (row) { return row.count; }),
                         backgroundColor: [green, blue, "#6b4fb3", red]}]},
      options: {plugins: {legend: {display: false}}, scales: {y: {beginAtZero: true, ticks: {precision: 0}}}}
    });
    draw("chart-response", {
      type: "line",
      data: {labels: labels, datasets: [
        {label: "First response", data: column("first_response_avg_seconds").map(minutes), borderColor: amber,
         backgroundColor: amber, spanGaps: true},
        {label: "Any reply", data: column("reply_avg_seconds").map(minutes), borderColor: blue,
         backgroundColor: blue, spanGaps: true}
      ]},
      options: {scales: {y: {beginAtZero: true, title: {display: true, text: "minutes"}}}}
    });
    draw("chart-errors", {
      type: "line",
      data: {labels: labels, datasets: [
        {label: "Failed share of sends", borderColor: red, backgroundColor: red, spanGaps: true,
         data: column("error_rate").map(function (rate) { return rate === null ? null : rate * 100; })}
      ]},
      options: {scales: {y: {beginAtZero: true, suggestedMax: 5, title: {display: true, text: "%"}}}}
    });
    if (data.templates.length) {
      var step = function (key) { return data.templates.map(function (row) { return row[key]; }); };
      draw("chart-templates", {
        type: "bar",
        data: {labels: data.templates.map(function (row) { return row.name + " (" + row.language + ")"; }),
               datasets: [{label: "Sent", data: step("sent"), backgroundColor: green},
                          {label: "Delivered", data: step("delivered"), backgroundColor: blue},
                          {label: "Read", data: step("read"), backgroundColor: "#6b4fb3"},
                          {label: "Replied", data: step("replied"), backgroundColor: amber},
                          {label: "Opted out", data: step("opted_out"), backgroundColor: red}]},
        options: {scales: {y: {beginAtZero: true, ticks: {precision: 0}}}}
      });
    }
    breakdown("intents", data.intents, "intent", blue);
    breakdown("sentiments", data.sentiments, "sentiment", [green, grey, red, amber]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
