// Kiosk page: hands-free voice over one WebSocket, big captions, panels, SOS. Vanilla JS, no build step.
(function () {
  "use strict";
  const cfg = JSON.parse(document.body.dataset.config);
  const $ = (id) => document.getElementById(id);
  const MAX_CAPTIONS = 4;

  const state = {
    ws: null,
    ready: null,          // the server's "ready" message (rates, end-of-turn silence)
    ctx: null,            // AudioContext (mic + playback)
    mic: null,            // AudioWorkletNode
    micError: null,
    playHead: 0,          // when the next reply chunk starts, in ctx time
    sources: [],          // scheduled reply chunks (stopped on barge-in)
    pttDown: false,
    muteUntil: 0,         // after press-to-talk: send silence so the server's VAD ends the turn
    retryMs: 500,
    lastSpeaker: null,
  };
  // for tests and diagnostics
  window.screenState = state;
  window.screenDebug = { addCaption: (speaker, text) => addCaption(speaker, text) };
  window.screenLog = { captions: [], messages: [], sos: [], audioChunks: 0, interrupts: 0, micFrames: 0 };

  // -- clock ---------------------------------------------------------------------------------------
  function tick() {
    const d = new Date();
    $("clock").textContent = String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }
  tick();
  setInterval(tick, 10000);

  // -- connection ----------------------------------------------------------------------------------
  function setConn(on, text) {
    const el = $("conn");
    el.className = on ? "on" : "off";
    el.textContent = text;
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = proto + "//" + location.host + cfg.wsPath + "?token=" + encodeURIComponent(cfg.token);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onopen = () => {
      state.retryMs = 500;
      setConn(true, "已连接");
      send({ type: "hello" });
    };
    ws.onclose = () => {
      state.ready = null;
      stopPlayback();
      setConn(false, "重新连接…");
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 8000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") onMessage(JSON.parse(ev.data));
      else playChunk(ev.data);
    };
  }

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  function onMessage(msg) {
    window.screenLog.messages.push(msg.type);
    switch (msg.type) {
      case "ready":
        state.ready = msg;
        startMic();
        break;
      case "caption":
        addCaption(msg.speaker, msg.text);
        break;
      case "interrupt":
        window.screenLog.interrupts += 1;
        stopPlayback();
        break;
      case "status":
        renderStatus(msg.lines);
        break;
      case "fraud":
        renderFraud(msg);
        break;
      case "sos":
        if (msg.alert_id) sos.alertId = msg.alert_id;
        if (!$("overlay").classList.contains("cancelled")) showOverlay(msg.text, true);
        break;
      case "error":
        addCaption("system", msg.text);
        break;
    }
  }

  // -- captions and panels -------------------------------------------------------------------------
  function addCaption(speaker, text) {
    window.screenLog.captions.push({ speaker, text });
    const box = $("captions");
    const hint = box.querySelector(".hint");
    if (hint) hint.remove();
    const last = box.lastElementChild;
    if (speaker === "assistant" && state.lastSpeaker === "assistant" && last) {
      last.textContent += text;  // one bubble per reply, clause after clause
    } else {
      const p = document.createElement("p");
      p.className = "caption " + speaker;
      p.textContent = text;
      box.appendChild(p);
    }
    state.lastSpeaker = speaker;
    while (box.children.length > MAX_CAPTIONS) box.firstElementChild.remove();
    fitCaptions();
  }

  // the box is bottom-aligned, so overflow goes off the top (not scrollable): drop the oldest bubbles
  // until the first one starts inside the box
  function fitCaptions() {
    const box = $("captions");
    const top = box.getBoundingClientRect().top;
    while (box.children.length > 1 && box.firstElementChild.getBoundingClientRect().top < top) {
      box.firstElementChild.remove();
    }
  }
  window.addEventListener("resize", fitCaptions);

  function renderStatus(lines) {
    const ul = $("status-lines");
    ul.textContent = "";
    for (const line of lines) {
      const li = document.createElement("li");
      li.className = line.kind;
      li.textContent = line.text;
      ul.appendChild(li);
    }
  }

  function renderFraud(msg) {
    const box = $("fraud");
    if (msg.state === "clear") {
      box.className = "hidden";
      return;
    }
    box.className = msg.state;
    const calling = msg.state === "platform_calling";
    const withCode = calling && msg.code;
    $("fraud-text").textContent = calling ? msg.caller_name + "正在给您打电话" : "小心骗子！";
    $("fraud-code").textContent = withCode ? msg.code : "";
    $("fraud-code-box").className = withCode ? "" : "hidden";
    $("fraud-hint").textContent = withCode
      ? "电话里说的确认码一样，才是" + msg.caller_name
      : calling ? "可以放心接听" : msg.text;
    if (msg.state === "not_platform") setTimeout(() => { if (box.className === "not_platform") box.className = "hidden"; }, 60000);
  }

  // the SOS dialog is modal: the rest of the page is inert (not focusable, hidden from assistive
  // technology) while it is open, and focus goes back to where it was when it closes
  const BEHIND = ["top", "talk", "status", "buttons"];
  $("fraud-close").addEventListener("click", () => {
    $("fraud").className = "hidden";
    $("fraud-check").focus();
  });

  function showOverlay(text, ok) {
    const overlay = $("overlay");
    const opening = overlay.classList.contains("hidden");
    $("overlay-text").textContent = text;
    overlay.classList.remove("hidden", "ok");
    if (ok) overlay.classList.add("ok");
    if (opening) {
      sos.opener = document.activeElement;
      for (const id of BEHIND) $(id).inert = true;
      $("overlay-close").focus();
    }
  }
  function closeOverlay() {
    hideCancel();
    $("overlay").className = "hidden";
    for (const id of BEHIND) $(id).inert = false;
    if (sos.opener && sos.opener.focus) sos.opener.focus();
  }
  $("overlay-close").addEventListener("click", closeOverlay);
  $("overlay").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { closeOverlay(); return; }
    if (ev.key !== "Tab") return;
    // focus stays inside the dialog
    const inside = [...$("overlay").querySelectorAll("button")].filter((b) => !b.classList.contains("hidden"));
    const i = inside.indexOf(document.activeElement);
    ev.preventDefault();
    inside[(i + (ev.shiftKey ? inside.length - 1 : 1)) % inside.length].focus();
  });

  // -- audio out -----------------------------------------------------------------------------------
  function ensureContext() {
    if (!state.ctx) state.ctx = new AudioContext({ latencyHint: "interactive" });
    if (state.ctx.state === "suspended") state.ctx.resume();
    return state.ctx;
  }

  function playChunk(buf) {
    window.screenLog.audioChunks += 1;
    // the elder is talking (barge-in): the rest of the reply is dropped, also chunks that were already on
    // their way before the server's interruption
    if (state.pttDown) return;
    const rate = (state.ready && state.ready.sample_rate_hz) || 16000;
    const ctx = ensureContext();
    const pcm = new Int16Array(buf);
    if (pcm.length === 0) return;
    const audio = ctx.createBuffer(1, pcm.length, rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    const start = Math.max(ctx.currentTime + 0.03, state.playHead);
    src.start(start);
    state.playHead = start + audio.duration;
    state.sources.push(src);
    src.onended = () => { state.sources = state.sources.filter((s) => s !== src); };
  }

  function stopPlayback() {
    for (const s of state.sources) { try { s.stop(); } catch (e) { /* already stopped */ } }
    state.sources = [];
    state.playHead = 0;
  }

  // -- audio in ------------------------------------------------------------------------------------
  async function startMic() {
    if (state.mic || state.micError) return;
    try {
      if (!navigator.mediaDevices || !window.AudioWorkletNode) throw new Error("insecure");
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      const ctx = ensureContext();
      await ctx.audioWorklet.addModule(cfg.workletPath);
      const node = new AudioWorkletNode(ctx, "mic-downsampler", {
        processorOptions: { outRate: state.ready.mic_sample_rate_hz, frameMs: state.ready.mic_frame_ms },
      });
      node.port.onmessage = (ev) => onMicFrame(ev.data.pcm, ev.data.rms);
      ctx.createMediaStreamSource(stream).connect(node);
      const sink = ctx.createGain();
      sink.gain.value = 0;
      node.connect(sink).connect(ctx.destination);  // keeps the worklet pulled
      state.mic = node;
    } catch (e) {
      state.micError = String(e);
      addCaption("system", "麦克风不能用，请用下面的按钮");
    }
  }

  // While the assistant is talking, quiet mic frames are sent as silence: what the screen's own speaker
  // leaks into the mic past echo cancellation must not barge in on the assistant; a voice raised over it
  // (or press-to-talk) still does.
  const ECHO_GATE_RMS = 0.06;
  function playing() {
    return state.ctx && state.playHead > state.ctx.currentTime;
  }

  function onMicFrame(pcm, rms) {
    $("level").style.width = Math.min(100, Math.round(rms * 400)) + "%";
    if (!state.ready || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    window.screenLog.micFrames += 1;
    const muted = performance.now() < state.muteUntil || (!state.pttDown && playing() && rms < ECHO_GATE_RMS);
    state.ws.send(muted ? new ArrayBuffer(pcm.byteLength) : pcm);
  }

  // -- press-to-talk -------------------------------------------------------------------------------
  // A finger: hold to talk. The pointer is captured, so a shaky finger that slides off the button does not
  // end the turn; only lifting it does. A keyboard or switch (Space/Enter): press once to start, once more
  // to stop (the server's end-of-speech detection also ends the turn).
  const ptt = $("ptt");
  function pttStart(ev, how) {
    if (ev) ev.preventDefault();
    ensureContext();
    if (state.pttDown) return;
    state.pttDown = how;
    state.muteUntil = 0;
    stopPlayback();
    ptt.classList.add("active");
    ptt.setAttribute("aria-pressed", "true");
    $("ptt-label").textContent = how === "key" ? "请说，说完再按一下" : "请说，说完松开";
    send({ type: "ptt", state: "start" });
  }
  function pttStop() {
    if (!state.pttDown) return;
    state.pttDown = false;
    ptt.classList.remove("active");
    ptt.setAttribute("aria-pressed", "false");
    $("ptt-label").textContent = "按住说话";
    const eot = (state.ready && state.ready.end_of_turn_silence_s) || 0.8;
    state.muteUntil = performance.now() + (eot + 0.3) * 1000;
    send({ type: "ptt", state: "stop" });
  }
  ptt.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 && ev.pointerType === "mouse") return;
    try { ptt.setPointerCapture(ev.pointerId); } catch (e) { /* pointer already gone */ }
    pttStart(ev, "pointer");
  });
  ptt.addEventListener("pointerup", () => { if (state.pttDown === "pointer") pttStop(); });
  ptt.addEventListener("pointercancel", () => { if (state.pttDown === "pointer") pttStop(); });
  ptt.addEventListener("keydown", (ev) => {
    if (ev.key !== " " && ev.key !== "Enter") return;
    ev.preventDefault();
    if (ev.repeat) return;
    if (state.pttDown) pttStop(); else pttStart(null, "key");
  });
  ptt.addEventListener("keyup", (ev) => { if (ev.key === " ") ev.preventDefault(); });
  ptt.addEventListener("blur", () => { if (state.pttDown === "key") pttStop(); });
  window.screenDebug.pttHow = () => state.pttDown;

  // -- buttons -------------------------------------------------------------------------------------
  for (const btn of document.querySelectorAll("button[data-button]")) {
    btn.addEventListener("click", () => {
      ensureContext();
      stopPlayback();
      if (!send({ type: "button", button: btn.dataset.button })) addCaption("system", "网络断开了，正在重新连接");
    });
  }

  $("fraud-check").addEventListener("click", () => {
    ensureContext();
    if (!send({ type: "fraud_check" })) addCaption("system", "网络断开了，正在重新连接");
  });

  // -- SOS: help is asked for at once; "按错了，取消" stays for cfg.sosCancelS seconds -------------------
  const sos = { pending: null, alertId: null, timer: null, until: 0, opener: null };
  $("btn-sos").addEventListener("click", () => {
    const t0 = performance.now();
    stopPlayback();
    sos.alertId = null;
    showOverlay("正在呼叫家人和服务中心…", false);
    offerCancel();
    sos.pending = (async () => {
      try {
        const resp = await fetch(cfg.sosPath, {
          method: "POST",
          headers: { "X-Screen-Token": cfg.token },
          keepalive: true,
        });
        const body = await resp.json();
        window.screenLog.sos.push({ ms: performance.now() - t0, alert_id: body.alert_id, status: resp.status });
        if (body.alert_id) sos.alertId = body.alert_id;
        if (!$("overlay").classList.contains("cancelled")) showOverlay(body.text || "已通知", resp.ok);
      } catch (e) {
        window.screenLog.sos.push({ ms: performance.now() - t0, error: String(e) });
        // never leave the elder without a way out: retry over the socket, and say what to do
        if (!send({ type: "sos" })) showOverlay("网络断开了！请直接打 120 或家人电话", false);
      }
    })();
  });

  function offerCancel() {
    const btn = $("sos-cancel");
    clearInterval(sos.timer);
    sos.until = performance.now() + cfg.sosCancelS * 1000;
    btn.classList.remove("hidden");
    const left = () => {
      const s = Math.ceil((sos.until - performance.now()) / 1000);
      if (s <= 0) { hideCancel(); return; }
      $("sos-cancel-left").textContent = "（" + s + "秒）";
    };
    left();
    sos.timer = setInterval(left, 250);
  }
  function hideCancel() {
    clearInterval(sos.timer);
    const btn = $("sos-cancel");
    const hadFocus = document.activeElement === btn;
    btn.classList.add("hidden");
    if (hadFocus) $("overlay-close").focus();
  }
  $("sos-cancel").addEventListener("click", async () => {
    hideCancel();
    $("overlay").classList.add("cancelled");
    $("overlay-text").textContent = "正在取消…";
    await sos.pending;
    if (!sos.alertId) { showOverlay("没能取消，值班人员会打电话给您", false); return; }
    try {
      const resp = await fetch(cfg.sosPath + "/" + sos.alertId + "/cancel", {
        method: "POST", headers: { "X-Screen-Token": cfg.token },
      });
      const body = await resp.json();
      window.screenLog.sosCancel = { status: resp.status, alert_id: sos.alertId };
      showOverlay(body.text || "已取消", resp.ok);
    } catch (e) {
      showOverlay("没能取消，值班人员会打电话给您", false);
    }
  });

  document.addEventListener("pointerdown", () => ensureContext(), { once: true });
  connect();
})();
