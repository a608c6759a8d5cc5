// nvr's viewing page. The token arrives after '#' and is traded once for an HttpOnly cookie;
// it is then removed from the address bar. No third-party code.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { link: null, pcs: [], ended: false, clockSource: null };

function say(text) { $("nvr-message").textContent = text; }
function setClock(ms) {
  if (!isFinite(ms)) return;
  const iso = new Date(ms).toISOString();
  const el = $("nvr-clock");
  el.setAttribute("datetime", iso);
  el.textContent = iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function endAll(why) {
  if (state.ended) return;
  state.ended = true;
  document.body.dataset.state = "ended";
  for (const pc of state.pcs) { try { pc.close(); } catch (e) {} }
  for (const v of document.querySelectorAll("video")) {
    v.pause(); v.srcObject = null; v.removeAttribute("src"); v.load();
  }
  say(why);
}

async function api(path, opts) {
  const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  if (!resp.ok) {
    const text = await resp.text();
    const m = text.match(/<p id=nvr-refused>([^<]*)<\/p>/);
    const err = new Error(m ? m[1].replace(/&#x27;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, "&") : text);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

function openEvents(link) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/l/${link.id}/events`);
  ws.onmessage = (ev) => { const m = JSON.parse(ev.data); if (m.ended) endAll(m.ended); };
  ws.onclose = () => { if (!state.ended) endAll("this viewing session has ended"); };
  // Belt and braces: the page also stops at the expiry it was told.
  const left = Date.parse(link.expires) - Date.parse(link.now);
  setTimeout(() => endAll("this viewing link expired at " + link.expires), Math.max(0, left));
}

function camBox(cam) {
  const box = document.createElement("div");
  box.className = "cam";
  const title = document.createElement("div");
  title.textContent = cam.name + " (" + cam.id + ")";
  const video = document.createElement("video");
  video.dataset.camera = cam.id;
  video.muted = true; video.autoplay = true; video.playsInline = true;
  const why = document.createElement("div");
  why.className = "why";
  box.append(title, video, why);
  $("cams").append(box);
  return { video, why, box };
}

// ---- live: WebRTC, the camera's H.264 as it was sent -------------------------------------
async function startLive(link, cam) {
  const { video, why } = camBox(cam);
  if (cam.unsupported) { why.textContent = "No live picture: " + cam.unsupported; return; }
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pcs.push(pc);
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (ev) => { video.srcObject = new MediaStream([ev.track]); video.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((res) => {
    if (pc.iceGatheringState === "complete") return res();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") res(); };
    setTimeout(res, 2000);
  });
  try {
    const ans = await api(`/api/l/${link.id}/live/${encodeURIComponent(cam.id)}/offer`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp }),
    });
    await pc.setRemoteDescription(ans);
  } catch (e) {
    why.textContent = e.status === 409 ? e.message : ("No live picture: " + e.message);
    pc.close();
  }
  // No picture after a while: ask the server whether the stream is one WebRTC cannot carry.
  setTimeout(async () => {
    if (state.ended || video.videoWidth > 0) return;
    try {
      const info = await api(`/api/l/${link.id}/info`);
      const c = info.cameras.find((x) => x.id === cam.id);
      if (c && c.fallback === "fmp4") { pc.close(); startFmp4(link, cam, video, why); }
      else if (c && c.unsupported) why.textContent = "No live picture: " + c.unsupported;
    } catch (e) { /* the events socket reports an ended link */ }
  }, 4000);
  // Live: the frame on screen is (within the latency) now.
  if (!state.clockSource) {
    state.clockSource = video;
    setInterval(() => {
      if (!state.ended && video.currentTime > 0 && !video.paused) setClock(Date.now());
    }, 200);
  }
}

// ---- live from the segment being written: H.264 with B-frames, fMP4 over a WebSocket ------
function startFmp4(link, cam, video, why) {
  why.textContent = "This camera's H.264 uses B-frames, which WebRTC cannot carry; showing its " +
    "recording as it is written (a few seconds behind).";
  const ms = new MediaSource();
  video.srcObject = null;
  video.src = URL.createObjectURL(ms);
  ms.addEventListener("sourceopen", () => {
    let sb = null;
    const queue = [];
    const pump = () => {
      if (!sb || sb.updating || !queue.length || state.ended) return;
      sb.appendBuffer(queue.shift());
    };
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}` +
      `/api/l/${link.id}/live/${encodeURIComponent(cam.id)}/fmp4`);
    ws.binaryType = "arraybuffer";
    state.pcs.push({ close: () => ws.close(), getStats: async () => new Map() });
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const m = JSON.parse(ev.data);
        if (m.mime && !sb) {
          sb = ms.addSourceBuffer(m.mime);
          sb.mode = "sequence";
          sb.addEventListener("updateend", () => {
            // Stay live: never more than ~2.5 s behind what has arrived.
            const b = video.buffered;
            if (b.length && b.end(b.length - 1) - video.currentTime > 2.5) {
              video.currentTime = b.end(b.length - 1) - 0.3;
            }
            if (video.paused) video.play().catch(() => {});
            pump();
          });
        }
        return;
      }
      queue.push(ev.data);
      pump();
    };
  }, { once: true });
}

// ---- playback: whole fMP4 segment files appended to MSE in "sequence" mode ---------------
// One player per camera of the link; jump and speed apply to all; the clock follows the first.
function drawTimeline(player, bar) {
  const tl = player.tl;
  const span = tl.end_us - tl.start_us;
  const pos = (us) => (100 * (us - tl.start_us) / span) + "%";
  const wid = (a, b) => (100 * (b - a) / span) + "%";
  for (const s of tl.segments) {
    const d = document.createElement("div");
    d.className = "run"; d.style.left = pos(s.start_us); d.style.width = wid(s.start_us, s.end_us);
    d.title = `recorded ${s.start} – ${s.end}`;
    bar.append(d);
  }
  for (const g of tl.gaps) {
    const d = document.createElement("div");
    d.className = "gap"; d.style.left = pos(g.start_us); d.style.width = wid(g.start_us, g.end_us);
    d.title = "gap: " + g.reason;
    bar.append(d);
    const li = document.createElement("li");
    li.textContent = `${tl.camera}: gap ${g.start} – ${g.end}: ${g.reason}`;
    li.dataset.camera = tl.camera; li.dataset.start = g.start; li.dataset.end = g.end;
    $("gaps").append(li);
  }
  const head = document.createElement("div");
  head.className = "head"; bar.append(head);
  player.head = head;
  bar.onclick = (ev) => {
    const r = bar.getBoundingClientRect();
    playAllFrom(tl.start_us + span * (ev.clientX - r.left) / r.width);
  };
}

function playAllFrom(wallUs) {
  for (const p of state.players || []) {
    p.generation += 1;
    startMse(p, Math.floor(wallUs));
  }
}

function startMse(player, fromUs) {
  // One MediaSource per recorded run (segments back to back, as one camera session wrote them):
  // within a run the files share one codec configuration and play without a seam; at a gap
  // the camera may have restarted with new parameters, so the next run gets a fresh decoder.
  const { tl, video } = player;
  const generation = player.generation;
  const live = () => !state.ended && player.generation === generation;
  const segs = tl.segments;
  let i = segs.findIndex((s) => s.end_us > fromUs);
  if (i < 0) { player.why.textContent = "no recording at or after that time in this link's window"; return; }
  player.why.textContent = "";
  if (fromUs < segs[i].start_us) fromUs = segs[i].start_us;  // in a gap: skip to after it
  const ms = new MediaSource();
  const pieces = []; // {mediaStart, mediaEnd, wallStart}
  player.pieces = pieces;
  video.src = URL.createObjectURL(ms);
  const nextRun = () => {
    if (live() && player.nextRunUs !== null) startMse(player, player.nextRunUs);
  };
  player.nextRunUs = null;
  video.onended = nextRun;
  // A file the browser cannot decode: go on with the next run rather than stop for good.
  video.onerror = () => {
    if (!live()) return;
    const after = segs.find((s) => s.start_us > wallOf(player, video.currentTime) * 1000 + 1000);
    if (after) { player.why.textContent = "skipped footage this browser could not decode"; startMse(player, after.start_us); }
  };
  ms.addEventListener("sourceopen", async () => {
    const sb = ms.addSourceBuffer(tl.mime);
    sb.mode = "sequence";
    const append = (buf) => new Promise((res, rej) => {
      sb.addEventListener("updateend", res, { once: true });
      sb.addEventListener("error", rej, { once: true });
      sb.appendBuffer(buf);
    });
    let first = true;
    for (; i < segs.length; i++) {
      if (!live()) return;
      if (!first && segs[i].start_us > segs[i - 1].end_us + 1000) {  // a gap ends this run
        player.nextRunUs = segs[i].start_us;
        break;
      }
      // Stay at most a minute of footage ahead of the play position.
      while (pieces.length && video.currentTime < pieces[pieces.length - 1].mediaStart - 60 && live()) {
        await new Promise((r) => setTimeout(r, 500));
      }
      const resp = await fetch(segs[i].url, { credentials: "same-origin" });
      if (!resp.ok) { endAll((await resp.text()).replace(/<[^>]+>/g, "").trim()); return; }
      const buf = await resp.arrayBuffer();
      if (!live()) return;
      const before = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
      await append(buf);
      const after = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : before;
      pieces.push({ mediaStart: before, mediaEnd: after, wallStart: segs[i].start_us });
      if (first) {
        first = false;
        video.currentTime = before + (fromUs - segs[i].start_us) / 1e6;
        video.playbackRate = parseFloat($("speed").value);
        video.play().catch(() => {});
      }
    }
    if (live() && ms.readyState === "open") ms.endOfStream();
  }, { once: true });
}

function wallOf(player, t) {
  for (const p of player.pieces || []) {
    if (t >= p.mediaStart - 0.001 && t < p.mediaEnd + 0.001) return p.wallStart / 1000 + (t - p.mediaStart) * 1000;
  }
  return NaN;
}

async function startPlayback(link) {
  $("nvr-playback").hidden = false;
  state.players = [];
  for (const cam of link.cameras) {
    const tl = await api(`/api/l/${link.id}/timeline/${encodeURIComponent(cam.id)}`);
    const { video, why, box } = camBox(cam);
    const bar = document.createElement("div");
    bar.className = "timeline";
    if (!state.players.length) bar.id = "timeline";
    box.insertBefore(bar, video);
    const player = { cam, tl, video, why, generation: 0, pieces: [] };
    state.players.push(player);
    if (!state.mse) state.mse = player;
    drawTimeline(player, bar);
    const primary = state.players.length === 1;
    const tick = () => {
      const w = wallOf(player, video.currentTime);
      if (!state.ended && isFinite(w) && !video.seeking && video.readyState >= 2) {
        if (primary) setClock(w);
        player.head.style.left = (100 * (w * 1000 - tl.start_us) / (tl.end_us - tl.start_us)) + "%";
      }
      if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(tick);
    };
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(tick);
    setInterval(tick, 250);
    if (!tl.segments.length) { why.textContent = "nothing was recorded in this link's window"; continue; }
    startMse(player, tl.start_us);
  }
  $("speed").onchange = () => {
    for (const p of state.players) p.video.playbackRate = parseFloat($("speed").value);
  };
  $("go").onclick = () => {
    const t = Date.parse($("jump").value);
    if (isFinite(t)) playAllFrom(t * 1000); else say("not a time: " + $("jump").value);
  };
}

async function main() {
  const token = location.hash.slice(1);
  const known = new URLSearchParams(location.search).get("link");
  let link;
  try {
    if (token) {
      history.replaceState(null, "", location.pathname);  // the token leaves the address bar
      link = await api("/api/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }),
      });
    } else if (known) {
      link = await api(`/api/l/${encodeURIComponent(known)}/info`);  // a reload: the cookie
    } else {
      throw new Error("no viewing link: open the link you were given");
    }
  } catch (e) {
    document.body.dataset.state = "refused";
    say(e.message);
    return;
  }
  // A reload finds its session again by the link's id (not secret); the token is gone.
  history.replaceState(null, "", location.pathname + "?link=" + encodeURIComponent(link.id));
  state.link = link;
  document.body.dataset.state = "open";
  // An emergency link's purpose is stored as "emergency: AGENCY": the heading says the word once.
  const purpose = link.kind === "emergency" ? link.purpose.replace(/^emergency: /, "") : link.purpose;
  $("nvr-title").textContent = (link.kind === "playback" ? "Recorded footage" :
    link.kind === "emergency" ? "Emergency live feed" : "Live view") + ": " + purpose;
  say("link " + link.id + ", valid until " + link.expires);
  openEvents(link);
  if (link.kind === "playback") await startPlayback(link);
  else for (const cam of link.cameras) startLive(link, cam);
}
main();
