// 平安通 console: record a voice pack sentence in the browser (views_voice.py). The microphone is captured with
// an AudioContext (not MediaRecorder: the server reads WAV only), encoded as 16-bit mono WAV and uploaded with the
// sentence; the answer (the automatic check) updates the row and the progress line. Plain JS, no framework.
(function () {
  "use strict";
  var table = document.getElementById("voice-table");
  var progress = document.getElementById("voice-progress");
  if (!table || !progress) { return; }
  var dialect = progress.getAttribute("data-dialect");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var LABELS = { passed: "已录，检查通过", failed: "未通过自动检查，请重录", silent: "没有录到声音，请重录" };
  var active = null; // {row, ctx, stream, node, chunks}

  function wav(chunks, rate) {
    var n = chunks.reduce(function (a, c) { return a + c.length; }, 0);
    var buf = new ArrayBuffer(44 + n * 2), v = new DataView(buf), o = 44;
    function str(at, s) { for (var i = 0; i < s.length; i++) { v.setUint8(at + i, s.charCodeAt(i)); } }
    str(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); str(8, "WAVE"); str(12, "fmt ");
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
    v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
    v.setUint32(40, n * 2, true);
    chunks.forEach(function (c) {
      for (var i = 0; i < c.length; i++) { var s = Math.max(-1, Math.min(1, c[i])); v.setInt16(o, s * 32767, true); o += 2; }
    });
    return new Blob([buf], { type: "audio/wav" });
  }

  function start(row, button) {
    navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false } }).then(function (stream) {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      var source = ctx.createMediaStreamSource(stream);
      var node = ctx.createScriptProcessor(4096, 1, 1);
      var chunks = [];
      node.onaudioprocess = function (ev) { chunks.push(new Float32Array(ev.inputBuffer.getChannelData(0))); };
      source.connect(node); node.connect(ctx.destination);
      active = { row: row, button: button, ctx: ctx, stream: stream, node: node, chunks: chunks };
      button.textContent = "停止并上传"; row.classList.add("recording");
    }).catch(function () { row.querySelector(".st").textContent = "无法使用麦克风"; });
  }

  function stop() {
    var a = active; active = null;
    a.node.disconnect(); a.stream.getTracks().forEach(function (t) { t.stop(); });
    var blob = wav(a.chunks, a.ctx.sampleRate); a.ctx.close();
    a.button.textContent = "录音"; a.button.disabled = true; a.row.classList.remove("recording");
    a.row.querySelector(".st").textContent = "检查中……";
    var form = new FormData();
    form.append("text", a.row.getAttribute("data-text")); form.append("audio", blob, "take.wav");
    fetch("/console/voice/" + dialect, { method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf } })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        var st = a.row.querySelector(".st");
        st.textContent = LABELS[res.status] || res.status;
        if (res.status === "failed") { st.textContent += "（识别为：" + res.heard + "）"; }
        a.row.setAttribute("data-status", res.status);
        if (res.file) {
          a.row.querySelector(".play").innerHTML = "";
          var audio = document.createElement("audio");
          audio.controls = true; audio.src = "/console/voice/" + dialect + "/audio/" + res.file;
          a.row.querySelector(".play").appendChild(audio);
        }
        progress.querySelector(".num").textContent = res.recorded;
      })
      .catch(function () { a.row.querySelector(".st").textContent = "上传失败，请重试"; })
      .then(function () { a.button.disabled = false; });
  }

  table.addEventListener("click", function (ev) {
    var button = ev.target.closest("button.rec");
    if (!button) { return; }
    if (active && active.button === button) { stop(); return; }
    if (active) { return; }
    start(button.closest("tr"), button);
  });
})();
