// 平安通 console: live updates (server-sent events), SLA countdowns, confirmations. Plain JS, no framework.
(function () {
  "use strict";

  function announce(text) {
    var region = document.getElementById("live-region");
    if (region) { region.textContent = text; }
  }

  // forms with data-confirm ask first (false alarm, cancel an order, delete a contact)
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { ev.preventDefault(); }
  });

  // re-fetch the part of the page that lists things (queue, board) and swap it in place
  function refreshFragment(id) {
    var box = document.getElementById(id);
    if (!box) { return Promise.resolve(false); }
    var url = box.getAttribute("data-fragment") || window.location.pathname + window.location.search;
    if (url.indexOf("fragment=") < 0) { url += (url.indexOf("?") >= 0 ? "&" : "?") + "fragment=1"; }
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return false; }
        var before = {};
        box.querySelectorAll("tr a").forEach(function (a) { before[a.getAttribute("href")] = true; });
        box.innerHTML = html;
        box.querySelectorAll("tr a").forEach(function (a) {
          if (!before[a.getAttribute("href")]) { a.closest("tr").classList.add("new-row"); }
        });
        tickDeadlines();
        return true;
      })
      .catch(function () { return false; });
  }

  var KIND = { sos: "紧急求助", unwell: "身体不适", fraud: "疑似诈骗", human: "要求人工", no_answer: "关怀电话未接",
    sla_dispatch: "派单超时", sla_answer: "响应超时", misunderstanding: "多次听不懂", nurse_callback: "护士回电",
    unconfirmed_emergency: "未确认的紧急求助", sos_cancelled: "紧急求助已取消，请回电",
    missed_call: "来电占线未接通，请回电" };

  // a hand-over ringing this operator's phone pops up (issue #16); the banner follows the outcome
  var pops = {};  // alert id → the latest fetch's number while its banner is shown
  function popBox() {
    var box = document.getElementById("handover-pops");
    if (!box) {
      box = document.createElement("div");
      box.id = "handover-pops";
      document.body.insertBefore(box, document.body.firstChild);
    }
    return box;
  }
  function showPop(id) {
    var seq = (pops[id] || 0) + 1;
    pops[id] = seq;
    return fetch("/console/alerts/" + id + "?fragment=pop", { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || pops[id] !== seq) { return; }  // closed meanwhile, or a newer step is on its way
        var wrap = document.createElement("div");
        wrap.innerHTML = html;
        var el = wrap.firstElementChild;
        var box = popBox();
        var old = box.querySelector('[data-alert="' + id + '"]');
        if (old) { box.replaceChild(el, old); } else { box.appendChild(el); }
        el.querySelector(".pop-close").addEventListener("click", function () { el.remove(); delete pops[id]; });
      })
      .catch(function () { return null; });
  }

  function connect() {
    var url = document.body.getAttribute("data-live");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    var pending = {};
    // coalesce bursts of events into one refresh per list
    function later(key, fn) { clearTimeout(pending[key]); pending[key] = setTimeout(fn, 300); }
    source.addEventListener("alert", function (ev) {
      var data = JSON.parse(ev.data);
      if (document.getElementById("queue")) {
        later("queue", function () { refreshFragment("queue"); });
      }
      if (data.status === "open") { announce("新警报：" + (KIND[data.kind] || data.kind) + " #" + data.id); }
      if (document.getElementById("family-alerts")) { later("family-alerts", function () { refreshFragment("family-alerts"); }); }
    });
    source.addEventListener("order", function () {
      if (document.getElementById("board")) { later("board", function () { refreshFragment("board"); }); }
      if (document.getElementById("family-orders")) {
        later("family-orders", function () { refreshFragment("family-orders").then(function (ok) { if (ok) { announce("工单状态已更新"); } }); });
      }
    });
    source.addEventListener("outbox", function () {  // family notices: queued → sent → delivered / failed
      if (document.getElementById("notices")) { later("notices", function () { refreshFragment("notices"); }); }
    });
    source.addEventListener("handover", function (ev) {  // ringing / connected / no answer → family / acknowledged
      var data = JSON.parse(ev.data);
      if (data.mine || pops[data.alert_id]) {
        showPop(data.alert_id);
        if (data.mine && data.ringing && data.ringing.length) { announce("转接来电：警报 #" + data.alert_id + "，请接听电话"); }
      }
      var state = document.getElementById("handover-state");
      if (state && state.getAttribute("data-alert") === String(data.alert_id)) {
        later("handover-state", function () { refreshFragment("handover-state"); });
      }
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  function fmt(ms) {
    var neg = ms < 0; ms = Math.abs(ms);
    var m = Math.floor(ms / 60000), s = Math.floor((ms % 60000) / 1000);
    return (neg ? "已超时 " : "剩余 ") + m + " 分 " + (s < 10 ? "0" : "") + s + " 秒";
  }

  function tickDeadlines() {
    var now = Date.now();
    document.querySelectorAll(".sla[data-deadline]").forEach(function (el) {
      var left = Date.parse(el.getAttribute("data-deadline")) - now;
      if (!el.dataset.label) { el.dataset.label = el.textContent.split(" ")[0]; }
      el.textContent = el.dataset.label + " " + fmt(left);
      el.classList.toggle("late", left < 0);
      var card = el.closest(".order");
      if (card && left < 0) { card.classList.add("overdue"); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    tickDeadlines();
    setInterval(tickDeadlines, 1000);
  });
})();
