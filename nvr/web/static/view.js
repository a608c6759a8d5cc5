// nvr's viewing page. The token arrives after '#' and is traded once for an HttpOnly cookie;
// it is then removed from the address bar. No third-party code, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { link: null, pcs: [], ended: false, clockSource: null, tiles: [], players: [] };

function say(text) { $("nvr-message").textContent = text; }

// ---- time as people read it: the recorder box's zone, to the second --------------------
// The box's zone comes with the link (info.zone): Intl formats in it, whatever the viewer's
// own computer is set to, so the page agrees with what every `nvr` command prints.
const zone = { name: undefined, names: {}, offset: 0 };
let fmtCache = null;
function setZone(z) {
  if (!z) return;
  zone.names = z.names || {};
  zone.offset = z.offset_minutes || 0;
  zone.name = undefined;
  if (z.name) {
    try { new Intl.DateTimeFormat("en-US", { timeZone: z.name }); zone.name = z.name; } catch (e) { /* below */ }
  }
  fmtCache = null;
}
function fmt() {
  if (fmtCache) return fmtCache;
  const base = { hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" };
  // Without an IANA name: a fixed offset, formatted as UTC after shifting.
  fmtCache = new Intl.DateTimeFormat("en-US", Object.assign({ timeZone: zone.name || "UTC" }, base));
  return fmtCache;
}
// {y, mo, d, h, mi, s, off} of an instant (ms) in the box's zone; off in minutes.
function parts(ms) {
  const shift = zone.name ? 0 : zone.offset * 60000;
  const p = {};
  for (const x of fmt().formatToParts(new Date(ms + shift))) p[x.type] = x.value;
  const v = { y: +p.year, mo: +p.month, d: +p.day, h: +p.hour % 24, mi: +p.minute, s: +p.second };
  v.off = zone.name ? Math.round((Date.UTC(v.y, v.mo - 1, v.d, v.h, v.mi, v.s) - Math.floor(ms / 1000) * 1000) / 60000) : zone.offset;
  return v;
}
function abbr(off) {
  if (zone.names[String(off)]) return zone.names[String(off)];
  const sign = off < 0 ? "-" : "+", a = Math.abs(off);
  return "UTC" + sign + String(Math.floor(a / 60)).padStart(2, "0") + String(a % 60).padStart(2, "0");
}
const two = (n) => String(n).padStart(2, "0");
function hms(ms) { const p = parts(ms); return `${two(p.h)}:${two(p.mi)}:${two(p.s)}`; }
function hm(ms) { const p = parts(ms); return `${two(p.h)}:${two(p.mi)}`; }
function day(ms) { const p = parts(ms); return `${p.y}-${two(p.mo)}-${two(p.d)}`; }
// "14:05:03 EST", or with the date: "2026-12-07 14:05:03 EST" (as `nvr` prints).
function when(ms, withDate) {
  const p = parts(ms);
  return (withDate ? day(ms) + " " : "") + hms(ms) + " " + abbr(p.off);
}
// Local wall-clock fields in the box's zone → an instant (ms): two rounds settle DST edges.
function fromLocal(y, mo, d, h, mi, s) {
  const guess = Date.UTC(y, mo - 1, d, h, mi, s);
  let t = guess - parts(guess).off * 60000;
  t = guess - parts(t).off * 60000;
  return t;
}
// What `nvr` accepts for a time: ISO 8601 with or without an offset (local without), a space
// for the T, a bare date (local midnight), and here also a time of day alone (on the day on
// screen). Returns ms or NaN.
function parseWhen(text, dayOf) {
  const raw = text.trim();
  let m = raw.match(/^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$/);
  if (m) {
    const p = parts(dayOf);
    return fromLocal(p.y, p.mo, p.d, +m[1], +m[2], +(m[3] || 0)) + frac(m[4]);
  }
  m = raw.match(/^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i);
  if (!m) return NaN;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] || 0, m[5] || 0, m[6] || 0].map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return NaN;
  if (m[8]) {
    let off = 0;
    if (m[8].toUpperCase() !== "Z") {
      const o = m[8].replace(":", "");
      off = (o[0] === "-" ? -1 : 1) * (parseInt(o.slice(1, 3), 10) * 60 + parseInt(o.slice(3), 10));
    }
    return Date.UTC(y, mo - 1, d, h, mi, s) - off * 60000 + frac(m[7]);
  }
  return fromLocal(y, mo, d, h, mi, s) + frac(m[7]);
}
function frac(digits) { return digits ? Math.round(parseFloat("0." + digits) * 1000) : 0; }

function setClock(ms) {
  if (!isFinite(ms)) return;
  const el = $("nvr-clock");
  el.setAttribute("datetime", new Date(ms).toISOString());  // the contract: UTC ISO 8601
  el.textContent = when(ms, true);
}

// "ends 13:41 (in 4 min)", counting down.
function showEnds() {
  const link = state.link;
  if (!link || state.ended) return;
  const left = Date.parse(link.expires) - (Date.now() - state.skew);
  const el = $("nvr-ends");
  const inText = left >= 3600e3 ? `${Math.floor(left / 3600e3)} h ${Math.floor(left % 3600e3 / 60e3)} min`
    : left >= 60e3 ? `${Math.ceil(left / 60e3)} min` : `${Math.max(0, Math.ceil(left / 1000))} s`;
  const endMs = Date.parse(link.expires);
  const sameDay = day(endMs) === day(Date.now() - state.skew);
  el.textContent = `link ends ${sameDay ? hm(endMs) : day(endMs) + " " + hm(endMs)} ${abbr(parts(endMs).off)} (in ${inText})`;
  el.classList.toggle("soon", left < 120e3);
}

function endAll(why) {
  if (state.ended) return;
  state.ended = true;
  document.body.dataset.state = "ended";
  for (const pc of state.pcs) { try { pc.close(); } catch (e) {} }
  for (const v of document.querySelectorAll("video")) {
    v.pause(); v.srcObject = null; v.removeAttribute("src"); v.load();
  }
  $("nvr-ends").textContent = "";
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
  setTimeout(() => endAll("this viewing link expired at " + when(Date.parse(link.expires), true)),
    Math.max(0, left));
}

// ---- the wall of tiles ------------------------------------------------------------------
function layout() {
  const n = Math.max(1, state.tiles.length);
  const cols = Math.ceil(Math.sqrt(n));
  const cams = $("cams");
  cams.style.setProperty("--cols", String(cols));
  cams.style.setProperty("--rows", String(Math.ceil(n / cols)));
}
function enlarge(box) {
  const cams = $("cams");
  const big = cams.querySelector(".cam.big");
  if (big) big.classList.remove("big");
  cams.classList.toggle("one", Boolean(box) && box !== big);
  if (box && box !== big) { box.classList.add("big"); box.focus(); }
  else if (big) big.focus();
  for (const t of state.tiles) t.paint();
}

function camBox(cam) {
  const box = document.createElement("div");
  box.className = "cam";
  box.tabIndex = 0;
  // A group (not a button): its content changes (frame times, messages), and a button's name
  // must contain what it shows. Click or Enter enlarges it; the hint is its description.
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `${cam.name} (camera ${cam.id})`);
  box.title = "Click or Enter: enlarge; Escape: back to all cameras";
  const video = document.createElement("video");
  video.dataset.camera = cam.id;
  video.muted = true; video.autoplay = true; video.playsInline = true;
  video.setAttribute("aria-label", `camera ${cam.name}`);
  const canvas = document.createElement("canvas");
  canvas.className = "watermark";
  canvas.setAttribute("aria-hidden", "true");
  const label = document.createElement("div");
  label.className = "label";
  const name = document.createElement("span"); name.className = "name"; name.textContent = cam.name;
  const camid = document.createElement("span"); camid.className = "camid"; camid.textContent = cam.id;
  const frametime = document.createElement("span"); frametime.className = "frametime";
  label.append(name, camid, frametime);
  const why = document.createElement("div");
  why.className = "why";
  why.setAttribute("role", "status");
  box.append(video, canvas, label, why);
  box.addEventListener("click", () => enlarge(box));
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || (ev.key === " " && state.link.kind !== "playback")) { ev.preventDefault(); enlarge(box); }
  });
  $("cams").append(box);
  const tile = { cam, box, video, why, canvas, frametime, paint: () => paintWatermark(tile) };
  state.tiles.push(tile);
  layout();
  new ResizeObserver(() => tile.paint()).observe(box);
  // The picture's size arrives (or changes) with the stream: the masks follow it at once.
  video.addEventListener("resize", () => tile.paint());
  video.addEventListener("loadedmetadata", () => tile.paint());
  return tile;
}

// ---- watermark: whose link this is, on every tile, in the pixels of a screenshot ---------
function paintWatermark(tile) {
  const link = state.link;
  const c = tile.canvas;
  const w = c.clientWidth, h = c.clientHeight;
  if (!link || !w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const who = `link ${link.id} · ${link.actor || "?"} · ${link.purpose}`;
  const now = when(Date.now() - state.skew, true);
  const size = Math.max(11, Math.min(16, w / 45));
  // Faint, repeated across the picture, so cropping does not remove it…
  g.save();
  g.font = `${size}px system-ui, sans-serif`;
  g.fillStyle = "rgba(255,255,255,0.16)";
  g.translate(w / 2, h / 2);
  g.rotate(-Math.PI / 9);
  const step = size * 5;
  for (let y = -h; y < h; y += step) {
    for (let x = -w; x < w; x += g.measureText(who).width + size * 3) {
      g.fillText(who, x + ((y / step) % 2 ? size * 4 : 0), y);
    }
  }
  g.restore();
  // The masks over the faint marks (a masked area is one solid colour), under the legible line.
  paintMasks(tile, g, w, h);
  // …and legible along the bottom edge, with the time now.
  g.font = `600 ${size}px system-ui, sans-serif`;
  const line = `${who} · ${now}`;
  c.dataset.text = line;
  // One line when it fits, else two (a phone's tile), never squeezed unreadable.
  const lines = g.measureText(line).width <= w - 12 ? [line] : [who, now];
  const tw = Math.min(w - 8, Math.max(...lines.map((x) => g.measureText(x).width)));
  const lh = size + 4;
  g.fillStyle = "rgba(0,0,0,0.55)";
  g.fillRect(w - tw - 10, h - lh * lines.length - 6, tw + 10, lh * lines.length + 6);
  g.fillStyle = "rgba(255,255,255,0.85)";
  g.textAlign = "right"; g.textBaseline = "bottom";
  lines.forEach((x, k) => g.fillText(x, w - 5, h - 4 - lh * (lines.length - 1 - k), w - 8));
}

// ---- privacy masks: filled solid over the picture the video shows -------------------------
// The browser still receives the whole picture (docs/policy.md, "Privacy masks"): this keeps a
// masked area from being seen on a screen, not from being taken out of the page.
// The rectangle the picture occupies inside the element (object-fit: contain letterboxes it).
function contentBox(video, w, h) {
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh) return null;
  const scale = Math.min(w / vw, h / vh);
  const cw = vw * scale, ch = vh * scale;
  return { x: (w - cw) / 2, y: (h - ch) / 2, w: cw, h: ch };
}
function paintMasks(tile, g, w, h) {
  const masks = tile.cam.masks || [];
  const c = tile.canvas;
  if (!masks.length) { delete c.dataset.masks; return; }
  const r = contentBox(tile.video, w, h);
  // No picture size yet: no picture either; drawn as soon as the video has one ("resize").
  if (!r) { c.dataset.masks = "waiting"; return; }
  g.save();
  g.fillStyle = "#000"; g.strokeStyle = "#000"; g.lineWidth = 2;
  for (const m of masks) {
    // One path per mask, even-odd as the server's raster (nvr/media/masks.py): overlapping masks
    // must not cancel each other out.
    g.beginPath();
    m.polygon.forEach(([x, y], i) => {
      const px = r.x + x * r.w, py = r.y + y * r.h;
      if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
    });
    g.closePath();
    g.fill("evenodd");
    g.stroke();  // a pixel past the edge: no anti-aliased sliver of the picture shows
  }
  g.restore();
  c.dataset.masks = String(masks.length);
}

// ---- live: WebRTC, the camera's H.264 as it was sent -------------------------------------
async function startLive(link, cam) {
  const { video, why } = camBox(cam);
  // Live: the frame on screen is (within the latency) now.
  if (!state.clockSource) {
    state.clockSource = video;
    setInterval(() => {
      if (!state.ended && video.currentTime > 0 && !video.paused) setClock(Date.now() - state.skew);
    }, 200);
  }
  // Already known to have B-frames (an earlier viewer found out): straight to fMP4.
  if (cam.fallback === "fmp4") { startFmp4(link, cam, video, why); return; }
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

// ---- playback: one clock for every camera ------------------------------------------------
// Each camera plays its whole fMP4 segment files through MSE ("sequence" mode), one
// MediaSource per recorded run. One moment (`clock`) is shown on every tile: it follows the
// first camera that has a picture at that moment (its frames pace the page), the others are
// held to it (a seek when more than 0.4 s off); a camera with no recording at that moment shows
// the gap's reason; when no camera has footage the clock skips to the next recording.
const clock = { ms: NaN, playing: true, rate: 1, at: 0, view: null };

function segAt(tl, us) { return tl.segments.find((s) => s.start_us <= us && us < s.end_us); }
function runEndUs(tl, i) {
  while (i + 1 < tl.segments.length && tl.segments[i + 1].start_us <= tl.segments[i].end_us + 1000) i++;
  return tl.segments[i].end_us;
}
function gapAt(tl, us) { return tl.gaps.find((g) => g.start_us <= us && us < g.end_us); }

function startMse(player, fromUs) {
  const { tl, video } = player;
  player.generation += 1;
  const generation = player.generation;
  const live = () => !state.ended && player.generation === generation;
  const segs = tl.segments;
  let i = segs.findIndex((s) => s.end_us > fromUs);
  if (i < 0) return;
  if (fromUs < segs[i].start_us) fromUs = segs[i].start_us;
  player.loading = true;
  player.runEnd = runEndUs(tl, i);
  player.runStart = segs[i].start_us;
  const ms = new MediaSource();
  const pieces = []; // {mediaStart, mediaEnd, wallStart}
  player.pieces = pieces;
  video.src = URL.createObjectURL(ms);
  video.onerror = () => {
    if (!live()) return;
    // A file this browser cannot decode: treated as a gap until the run is over.
    player.broken = player.runEnd; player.loading = false;
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
      if (!first && segs[i].start_us > segs[i - 1].end_us + 1000) break;  // a gap ends this run
      // Stay at most a minute of footage ahead of the play position.
      while (pieces.length && video.currentTime < pieces[pieces.length - 1].mediaStart - 60 && live()) {
        await new Promise((r) => setTimeout(r, 500));
      }
      const resp = await fetch(segs[i].url, { credentials: "same-origin" });
      if (!resp.ok) { endAll((await resp.text()).replace(/<[^>]+>/g, "").trim()); return; }
      const buf = await resp.arrayBuffer();
      if (!live()) return;
      const before = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
      try { await append(buf); } catch (e) { return; }
      const after = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : before;
      pieces.push({ mediaStart: before, mediaEnd: after, wallStart: segs[i].start_us });
      if (first) {
        first = false;
        // Where the clock is now (it may have moved while this loaded), not where we began.
        const want = isFinite(clock.ms) && clock.ms * 1000 >= segs[i].start_us ? clock.ms * 1000 : fromUs;
        video.currentTime = before + Math.max(0, want - segs[i].start_us) / 1e6;
        video.playbackRate = clock.rate;
        if (clock.playing) video.play().catch(() => {});
        player.loading = false;
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
// The time of the frame this player shows, or NaN when it shows none.
function showing(p) {
  const v = p.video;
  if (p.loading || v.ended || v.readyState < 2 || v.seeking) return NaN;
  return wallOf(p, v.currentTime);
}

function jumpTo(ms) {
  const players = state.players;
  if (!players.length) return;
  const tl0 = players[0].tl;
  ms = Math.min(Math.max(ms, tl0.start_us / 1000), tl0.end_us / 1000 - 1);
  // Nothing recorded on any camera at that moment: on to the next recording.
  if (!players.some((p) => segAt(p.tl, ms * 1000))) {
    const next = Math.min(...players.map((p) => (p.tl.segments.find((s) => s.start_us > ms * 1000) || { start_us: Infinity }).start_us));
    if (!isFinite(next)) { say("nothing was recorded after " + when(ms, true) + " in this link's window"); return; }
    ms = next / 1000;
  }
  clock.ms = ms; clock.at = performance.now();
  state.dayShown = false;
  for (const p of players) { p.generation += 1; p.pieces = []; p.loading = false; p.broken = 0; p.runEnd = 0; }
  sync();
}

// One frame back or forward, paused: HTMLVideoElement has no frame step, so every tile seeks by
// one frame's duration (measured from the frames the first tile painted, else 1/15 s — the
// cameras' usual rate). Inside the footage already loaded that is a plain seek; elsewhere jumpTo.
function stepFrame(dir) {
  if (!isFinite(clock.ms)) return;
  if (clock.playing) setPlaying(false);
  const target = clock.ms + dir * (state.frameS || 1 / 15) * 1000;
  const [lo, hi] = state.full;
  if (target < lo || target >= hi) return;
  const us = target * 1000;
  const inLoaded = (p) => p.pieces.find((x) => x.wallStart <= us && us < x.wallStart + (x.mediaEnd - x.mediaStart) * 1e6);
  if (!state.players.every((p) => !segAt(p.tl, us) || (!p.loading && inLoaded(p)))) { jumpTo(target); return; }
  clock.ms = target; clock.at = performance.now();
  for (const p of state.players) {
    const piece = segAt(p.tl, us) && inLoaded(p);
    if (piece) p.video.currentTime = piece.mediaStart + (us - piece.wallStart) / 1e6;
  }
  setClock(target);
  sync();
}

function sync() {
  if (state.ended) return;
  const players = state.players;
  const now = performance.now();
  // The leader: the first camera with a frame on screen at the clock's moment.
  let leader = null;
  for (const p of players) {
    const w = showing(p);
    if (isFinite(w) && (!isFinite(clock.ms) || Math.abs(w - clock.ms) < 1500)) { leader = p; clock.ms = w; break; }
  }
  if (!leader && clock.playing && !players.some((p) => p.loading)) {
    clock.ms += (now - clock.at) * clock.rate;  // between runs: the clock moves on by itself
  }
  clock.at = now;
  const us = clock.ms * 1000;
  let anyFootage = false;
  for (const p of players) {
    const s = segAt(p.tl, us);
    const v = p.video;
    if (!s || (p.broken && us < p.broken)) {
      if (!v.paused) v.pause();
      const g = gapAt(p.tl, us);
      p.why.textContent = p.broken && us < p.broken ? "skipped footage this browser could not decode"
        : g ? `No recording ${hms(g.start_us / 1000)}–${hms(g.end_us / 1000)}: ${g.reason}`
        : "no recording at this moment";
      v.classList.add("nothing");
      continue;
    }
    anyFootage = true;
    if (p.why.textContent.startsWith("No recording") || p.why.textContent.startsWith("no recording")) p.why.textContent = "";
    v.classList.remove("nothing");
    if (p.loading) continue;
    const w = wallOf(p, v.currentTime);
    if (!p.pieces.length || us >= p.runEnd || us < p.runStart || (!isFinite(w) && !v.ended)) {
      startMse(p, us);
      continue;
    }
    if (v.playbackRate !== clock.rate) v.playbackRate = clock.rate;
    if (p === leader) { if (clock.playing && v.paused) v.play().catch(() => {}); continue; }
    if (isFinite(w) && Math.abs(w - clock.ms) > 400) {
      const piece = p.pieces.find((x) => x.wallStart <= us && us < x.wallStart + (x.mediaEnd - x.mediaStart) * 1e6);
      if (piece) v.currentTime = piece.mediaStart + (us - piece.wallStart) / 1e6;
      else if (us > p.pieces[p.pieces.length - 1].wallStart) { /* still loading ahead */ }
    }
    if (clock.playing && v.paused && !v.ended) v.play().catch(() => {});
    if (!clock.playing && !v.paused) v.pause();
  }
  if (!anyFootage && !players.some((p) => p.loading)) {
    const next = Math.min(...players.map((p) => (p.tl.segments.find((s) => s.start_us > us) || { start_us: Infinity }).start_us));
    if (isFinite(next)) { clock.ms = next / 1000; clock.at = now; }
    else if (clock.playing) { setPlaying(false); }
  }
  if (leader) setClock(clock.ms);
  for (const p of players) {
    const w = showing(p);
    if (isFinite(w)) { p.video.dataset.time = new Date(w).toISOString(); p.frametime.textContent = when(w); }
    else p.frametime.textContent = isFinite(clock.ms) ? when(clock.ms) : "";
  }
  drawHead();
}

function setPlaying(on) {
  clock.playing = on;
  clock.at = performance.now();
  const b = $("play");
  b.textContent = on ? "❚❚" : "▶";
  b.setAttribute("aria-label", on ? "Pause" : "Play");
  for (const p of state.players) { if (on) { if (!p.loading) p.video.play().catch(() => {}); } else p.video.pause(); }
}
function setRate(r) {
  clock.rate = r;
  $("speed").value = String(r);
  for (const p of state.players) p.video.playbackRate = r;
}

// ---- the timeline: a shared axis, one lane per camera, a playhead ---------------------------
const STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);
function viewSpan() { return clock.view[1] - clock.view[0]; }
function xOf(ms) { return (ms - clock.view[0]) / viewSpan(); }

function drawTimeline() {
  const [a, b] = clock.view;
  const span = b - a;
  const axis = $("axis");
  axis.textContent = "";
  const width = axis.clientWidth || 600;
  const step = STEPS.find((s) => span / s <= width / 80) || STEPS[STEPS.length - 1];
  const major = STEPS.find((s) => s >= step * 4 && (s % step === 0)) || step * 4;
  const off = parts(a).off * 60000;  // align marks to the box's local clock
  for (let t = Math.ceil((a + off) / step) * step - off; t <= b; t += step) {
    const d = document.createElement("div");
    const isMajor = (t + off) % major === 0;
    d.className = "tick" + (isMajor ? " major" : "");
    d.style.left = (100 * xOf(t)) + "%";
    const lab = document.createElement("span");
    lab.textContent = step < 60000 ? hms(t) : hm(t);
    if (isMajor || span / step <= width / 80) d.append(lab);
    axis.append(d);
  }
  for (const p of state.players) drawLane(p);
  const mins = span / 60000;
  dayButtons();
  $("zoomlabel").textContent = mins >= 120 ? `${Math.round(mins / 60)} h shown` : mins >= 2 ? `${Math.round(mins)} min shown` : `${Math.round(span / 1000)} s shown`;
  drawHead();
}

function drawLane(p) {
  const track = p.track;
  track.textContent = "";
  const [a, b] = clock.view;
  const place = (el, s, e) => {
    const l = Math.max(0, xOf(s)), r = Math.min(1, xOf(e));
    el.style.left = (100 * l) + "%"; el.style.width = Math.max(0.15, 100 * (r - l)) + "%";
  };
  // Back-to-back segments drawn as one run: fewer elements, same picture.
  let run = null;
  const flush = () => {
    if (!run) return;
    const d = document.createElement("div");
    d.className = "run";
    place(d, run[0], run[1]);
    d.title = `${p.cam.name}: recorded ${when(run[0], true)} – ${hms(run[1])}`;
    track.append(d);
  };
  for (const s of p.tl.segments) {
    const s0 = s.start_us / 1000, s1 = s.end_us / 1000;
    if (s1 < a || s0 > b) continue;
    if (run && s0 <= run[1] + 1) run[1] = s1; else { flush(); run = [s0, s1]; }
  }
  flush();
  for (const g of p.tl.gaps) {
    const g0 = g.start_us / 1000, g1 = g.end_us / 1000;
    if (g1 < a || g0 > b) continue;
    const d = document.createElement("div");
    d.className = "gap";
    d.dataset.camera = p.cam.id;
    place(d, g0, g1);
    d.title = `${p.cam.name}: no recording ${hms(g0)} – ${hms(g1)} ${abbr(parts(g0).off)}: ${g.reason}`;
    track.append(d);
  }
}

function drawHead() {
  if (!clock.view || !isFinite(clock.ms)) return;
  const lanes = $("lanes");
  const track = lanes.querySelector(".track");
  if (!track) return;
  const tlr = $("timeline").getBoundingClientRect(), tr = track.getBoundingClientRect();
  const ms = state.dragMs !== undefined ? state.dragMs : clock.ms;
  const x = xOf(ms);
  const head = $("playhead");
  head.hidden = x < 0 || x > 1;
  head.style.left = (tr.left - tlr.left + x * tr.width) + "px";
  // Keep the playhead in view while playing.
  if ((x > 0.98 || x < 0) && state.dragMs === undefined && !state.dayShown && viewSpan() < state.full[1] - state.full[0]) {
    panTo(ms + viewSpan() * 0.4);
  }
  const tl = $("timeline");
  tl.setAttribute("aria-valuenow", String(Math.round(ms / 1000)));
  tl.setAttribute("aria-valuetext", when(ms, true));
}

function panTo(centerMs) {
  const span = viewSpan();
  const [lo, hi] = state.full;
  let a = Math.max(lo, Math.min(centerMs - span / 2, hi - span));
  clock.view = [a, a + span];
  drawTimeline();
}
function zoom(factor, atMs) {
  const [lo, hi] = state.full;
  const span = Math.min(hi - lo, Math.max(60000, viewSpan() * factor));
  const at = isFinite(atMs) ? atMs : (isFinite(clock.ms) ? clock.ms : lo);
  const frac = (at - clock.view[0]) / viewSpan();
  let a = at - frac * span;
  a = Math.max(lo, Math.min(a, hi - span));
  clock.view = [a, a + span];
  drawTimeline();
}

// A window longer than a day: the previous / next day buttons show that local day of it (the
// box's zone) on the timeline; the playhead stays where it is (the view does not follow it) until a moment is picked.
function dayStart(ms) { const p = parts(ms); return fromLocal(p.y, p.mo, p.d, 0, 0, 0); }
function nextDayStart(ms) { const p = parts(dayStart(ms) + 36 * 3600000); return fromLocal(p.y, p.mo, p.d, 0, 0, 0); }
function showDay(dir) {
  const [lo, hi] = state.full;
  const mid = (clock.view[0] + clock.view[1]) / 2;
  const d0 = dir < 0 ? dayStart(dayStart(mid) - 1) : nextDayStart(mid);
  if (d0 >= hi || nextDayStart(d0) <= lo) return;
  clock.view = [Math.max(lo, d0), Math.min(hi, nextDayStart(d0))];
  // The view stays on that day (no following the playhead) until a moment is picked.
  state.dayShown = true;
  drawTimeline();
}
function dayButtons() {
  const [lo, hi] = state.full;
  const mid = (clock.view[0] + clock.view[1]) / 2;
  const first = dayStart(lo), last = dayStart(hi - 1), here = dayStart(mid);
  $("prevday").disabled = here <= first;
  $("nextday").disabled = here >= last;
  $("daylabel").textContent = first === last ? "" : day(mid);
}

function timelineInput() {
  const lanes = $("lanes");
  const msAt = (ev) => {
    const tr = lanes.querySelector(".track").getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (ev.clientX - tr.left) / tr.width));
    return clock.view[0] + x * viewSpan();
  };
  lanes.addEventListener("pointerdown", (ev) => {
    if (!ev.target.closest(".track")) return;
    lanes.setPointerCapture(ev.pointerId);
    state.dragMs = msAt(ev);
    drawHead();
  });
  lanes.addEventListener("pointermove", (ev) => {
    if (state.dragMs === undefined) return;
    state.dragMs = msAt(ev);
    drawHead();
  });
  const drop = (ev) => {
    if (state.dragMs === undefined) return;
    const t = msAt(ev);
    state.dragMs = undefined;
    jumpTo(t);
  };
  lanes.addEventListener("pointerup", drop);
  thumbHover(lanes, msAt);
  lanes.addEventListener("pointercancel", () => { state.dragMs = undefined; drawHead(); });
  $("timeline").addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const tr = lanes.querySelector(".track").getBoundingClientRect();
    const at = clock.view[0] + Math.min(1, Math.max(0, (ev.clientX - tr.left) / tr.width)) * viewSpan();
    zoom(ev.deltaY > 0 ? 1.5 : 1 / 1.5, at);
  }, { passive: false });
  $("zoomin").onclick = () => zoom(1 / 2);
  $("prevday").onclick = () => showDay(-1);
  $("nextday").onclick = () => showDay(1);
  $("zoomout").onclick = () => zoom(2);
}

// ---- a thumbnail of the recording where the pointer rests on a lane ----------------------
// The server decodes the keyframe nearest that moment, with the camera's masks burned in
// (nvr/web/thumbs.py); asked for only once the pointer has rested a moment (debounced), and
// never while dragging the playhead. A busy server (429) just shows nothing this time.
function thumbHover(lanes, msAt) {
  const pop = $("thumb"), img = pop.querySelector("img"), cap = pop.querySelector("figcaption");
  let timer = 0, want = "";
  const hide = () => { clearTimeout(timer); want = ""; pop.hidden = true; };
  img.onload = () => { if (img.dataset.src === want) pop.hidden = false; };
  img.onerror = hide;
  lanes.addEventListener("pointermove", (ev) => {
    clearTimeout(timer);
    const lane = ev.target.closest && ev.target.closest(".lane");
    if (state.dragMs !== undefined || !lane || !ev.target.closest(".track")) { hide(); return; }
    const t = msAt(ev), cam = lane.dataset.camera;
    const p = state.players.find((x) => x.cam.id === cam);
    // Only where something was recorded (the green runs): elsewhere there is nothing to show.
    if (!p || !p.tl.segments.some((s) => s.start_us / 1000 <= t && t < s.end_us / 1000)) { hide(); return; }
    const box = $("timeline").getBoundingClientRect();
    const x = Math.min(box.width - 130, Math.max(0, ev.clientX - box.left - 120));
    timer = setTimeout(() => {
      const url = `/api/l/${state.link.id}/thumb/${encodeURIComponent(cam)}?t=${encodeURIComponent(new Date(t).toISOString())}`;
      want = url;
      pop.style.left = x + "px";
      pop.style.top = (lane.offsetTop - 4) + "px";
      cap.textContent = `${p.cam.name} · ${when(t, false)}`;
      pop.dataset.camera = cam;
      img.dataset.src = url;
      img.src = url;
    }, 150);
  });
  lanes.addEventListener("pointerleave", hide);
  lanes.addEventListener("pointerdown", hide);
}

async function startPlayback(link) {
  $("nvr-playback").hidden = false;
  for (const cam of link.cameras) {
    const tl = await api(`/api/l/${link.id}/timeline/${encodeURIComponent(cam.id)}`);
    const tile = camBox(cam);
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.dataset.camera = cam.id;
    const lname = document.createElement("span");
    lname.className = "lname"; lname.textContent = cam.name; lname.title = `${cam.name} (${cam.id})`;
    const track = document.createElement("div");
    track.className = "track";
    lane.append(lname, track);
    $("lanes").append(lane);
    const player = Object.assign(tile, { tl, track, generation: 0, pieces: [], loading: false, broken: 0 });
    state.players.push(player);
    if (!state.mse) state.mse = player;
    for (const g of tl.gaps) {
      const li = document.createElement("li");
      li.textContent = `${cam.name}: no recording ${when(g.start_us / 1000, true)} – ${hms(g.end_us / 1000)}: ${g.reason}`;
      li.dataset.camera = cam.id; li.dataset.start = g.start; li.dataset.end = g.end;
      $("gaps").append(li);
    }
    if (!tl.segments.length) tile.why.textContent = "nothing was recorded in this link's window";
  }
  const tl0 = state.players[0].tl;
  state.full = [tl0.start_us / 1000, tl0.end_us / 1000];
  clock.view = state.full.slice();
  const slider = $("timeline");
  slider.setAttribute("aria-valuemin", String(Math.round(state.full[0] / 1000)));
  slider.setAttribute("aria-valuemax", String(Math.round(state.full[1] / 1000)));
  $("zone-name").textContent = abbr(parts(state.full[0]).off);
  drawTimeline();
  timelineInput();
  new ResizeObserver(() => drawTimeline()).observe($("axis"));
  $("speed").onchange = () => setRate(parseFloat($("speed").value));
  $("play").onclick = () => setPlaying(!clock.playing);
  $("back").onclick = () => jumpTo(clock.ms - 10000);
  $("fwd").onclick = () => jumpTo(clock.ms + 10000);
  $("jumpform").onsubmit = (ev) => {
    ev.preventDefault();
    const t = parseWhen($("jump").value, isFinite(clock.ms) ? clock.ms : state.full[0]);
    if (!isFinite(t)) { say(`not a time: ${$("jump").value}; write 14:05, 2026-12-07 14:05 or ISO 8601`); return; }
    if (t < state.full[0] || t > state.full[1]) {
      say(`${when(t, true)} is outside this link's window (${when(state.full[0], true)} – ${hms(state.full[1])})`);
      return;
    }
    say("");
    jumpTo(t);
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest && ev.target.closest("input, select, button, summary")) return;
    if (ev.key === " ") { ev.preventDefault(); setPlaying(!clock.playing); }
    else if (ev.key === "ArrowLeft" && ev.shiftKey) { ev.preventDefault(); stepFrame(-1); }
    else if (ev.key === "ArrowRight" && ev.shiftKey) { ev.preventDefault(); stepFrame(1); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); jumpTo(clock.ms - 10000); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); jumpTo(clock.ms + 10000); }
    else if (ev.key === "+" || ev.key === "=") { const o = [...$("speed").options].map((x) => +x.value); setRate(o[Math.min(o.length - 1, o.indexOf(clock.rate) + 1)]); }
    else if (ev.key === "-" || ev.key === "−") { const o = [...$("speed").options].map((x) => +x.value); setRate(o[Math.max(0, o.indexOf(clock.rate) - 1)]); }
  });
  for (const p of state.players) {
    let lastMedia = NaN, lastCount = NaN;
    const tick = (now, meta) => {
      // The frame duration: two frames presented one after the other (none skipped between).
      const dt = meta ? meta.mediaTime - lastMedia : NaN;
      if (meta && meta.presentedFrames - lastCount === 1 && dt > 0.005 && dt < 0.5) state.frameS = dt;
      lastMedia = meta ? meta.mediaTime : NaN; lastCount = meta ? meta.presentedFrames : NaN;
      sync(); if (!state.ended) p.video.requestVideoFrameCallback(tick); };
    if (p === state.players[0] && "requestVideoFrameCallback" in p.video) p.video.requestVideoFrameCallback(tick);
  }
  setInterval(sync, 200);
  jumpTo(state.full[0]);
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
  state.skew = Date.now() - Date.parse(link.now);  // this computer's clock against the box's
  setZone(link.zone);
  document.body.dataset.state = "open";
  document.body.dataset.kind = link.kind;
  document.body.classList.toggle("emergency", link.kind === "emergency");
  // An emergency link's purpose already reads "emergency: AGENCY"; say it once.
  const purpose = link.kind === "emergency" ? link.purpose.replace(/^emergency:\s*/i, "") : link.purpose;
  const title = (link.kind === "playback" ? "Recorded footage" :
    link.kind === "emergency" ? "Emergency live feed" : "Live view") + ": " + purpose;
  $("nvr-title").textContent = title;
  document.title = title + " · nvr";
  showEnds();
  setInterval(() => { showEnds(); for (const t of state.tiles) t.paint(); }, 1000);
  $("fullscreen").onclick = () => {
    if (document.fullscreenElement) document.exitFullscreen(); else document.documentElement.requestFullscreen().catch(() => {});
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && $("cams").classList.contains("one")) enlarge(null);
    else if (ev.key === "f" && !(ev.target.closest && ev.target.closest("input"))) $("fullscreen").click();
  });
  openEvents(link);
  if (link.kind === "playback") await startPlayback(link);
  else for (const cam of link.cameras) startLive(link, cam);
}
main();
