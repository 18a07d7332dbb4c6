// lpms status page: the server's facts from /api/server once, the live streams from
// /api/streams every REFRESH_MS. Each stream gets a card with an hls.js player that
// lives as long as the stream does; refreshes only change text. Everything the API
// says goes into the page as text (textContent), never as markup: stream names are
// whatever a publisher chose.
"use strict";

const REFRESH_MS = 2000;
const FETCH_TIMEOUT_MS = 5000;
const TICK_MS = 1000; // uptime clocks run between refreshes
const PLAYER_RETRY_MS = 3000; // after a fatal hls.js error
const COPIED_MS = 1600;
const OFFSCREEN_STOP_MS = 10000; // a player scrolled out of sight this long stops loading
const COPY_KEYS = /Mac|iPhone|iPad/.test(navigator.platform) ? "⌘C" : "Ctrl+C";

const NBSP = "\u00a0"; // between a number and its unit, so that they stay on one line
const $ = (id) => document.getElementById(id);
const cards = new Map(); // stream ID -> Card
const visibility = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      const card = cards.get(entry.target.dataset.streamId);
      if (card && card.root === entry.target) card.setVisible(entry.isIntersecting);
    }
  },
  { rootMargin: "200px" },
);
let server = null; // /api/server, once it answered
let streamsSeenAt = 0; // performance.now() of the last good /api/streams

// ---- formatting ----------------------------------------------------------------

const CODEC_NAMES = {
  h264: "H.264", avc: "H.264", hevc: "HEVC", h265: "HEVC", av1: "AV1", vp9: "VP9",
  vp8: "VP8", aac: "AAC", mp3: "MP3", opus: "Opus", ac3: "AC-3", flac: "FLAC",
};

function codecName(codec) {
  if (!codec) return "unknown codec";
  const key = String(codec).toLowerCase();
  return CODEC_NAMES[key] || String(codec).toUpperCase();
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function formatBitrate(bitsPerSecond) {
  if (!isNumber(bitsPerSecond) || bitsPerSecond <= 0) return "–";
  if (bitsPerSecond >= 1e9) return `${(bitsPerSecond / 1e9).toFixed(2)}${NBSP}Gb/s`;
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(1)}${NBSP}Mb/s`;
  if (bitsPerSecond >= 1e3) return `${Math.round(bitsPerSecond / 1e3)}${NBSP}kb/s`;
  return `${Math.round(bitsPerSecond)}${NBSP}b/s`;
}

function formatBytes(bytes) {
  if (!isNumber(bytes) || bytes < 0) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)}${NBSP}${units[unit]}`;
}

function formatDuration(seconds) {
  if (!isNumber(seconds) || seconds < 0) return "–";
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

function formatFps(fps) {
  if (!isNumber(fps) || fps <= 0) return null;
  const rounded = Math.round(fps * 100) / 100;
  return `${Number.isInteger(rounded) ? rounded : rounded.toFixed(2)}${NBSP}fps`;
}

function formatSize(width, height) {
  return isNumber(width) && isNumber(height) && width > 0 && height > 0
    ? `${width}×${height}`
    : null;
}

function formatChannels(channels) {
  if (!isNumber(channels) || channels <= 0) return null;
  return { 1: "mono", 2: "stereo", 6: "5.1" }[channels] || `${channels} channels`;
}

function formatSampleRate(rate) {
  if (!isNumber(rate) || rate <= 0) return null;
  return `${Math.round(rate / 100) / 10}${NBSP}kHz`;
}

function trackText(track) {
  const parts = [codecName(track.codec)];
  if (track.kind === "video") {
    parts.push(formatSize(track.width, track.height), formatFps(track.fps));
  } else if (track.kind === "audio") {
    parts.push(formatSampleRate(track.sample_rate), formatChannels(track.channels));
  }
  if (isNumber(track.bitrate) && track.bitrate > 0) parts.push(formatBitrate(track.bitrate));
  return parts.filter(Boolean).join(" · ");
}

function trackLabel(kind) {
  if (kind === "video") return "Video";
  if (kind === "audio") return "Audio";
  return kind ? String(kind).charAt(0).toUpperCase() + String(kind).slice(1) : "Track";
}

function protocolName(protocol) {
  return protocol ? String(protocol).toUpperCase() : "";
}

// The page's own host, as a URL host (IPv6 in brackets), for how-to URLs.
function pageHost() {
  return location.hostname || "localhost";
}

function rtmpBase() {
  const port = server && isNumber(server.rtmp_port) ? server.rtmp_port : 1935;
  return `rtmp://${pageHost()}:${port}`;
}

function absoluteUrl(path) {
  try {
    return new URL(path, location.href).href;
  } catch {
    return String(path);
  }
}

// ---- DOM helpers -------------------------------------------------------------------

function setText(element, text) {
  const value = text == null ? "" : String(text);
  if (element.textContent !== value) element.textContent = value;
}

// Text for a URL or a command line, with a line break allowed after each "/" and
// before each space, so that a narrow screen wraps it where a person would.
function setBreakableText(element, text) {
  const value = text == null ? "" : String(text);
  if (element.textContent === value && element.childNodes.length > 0) return;
  element.replaceChildren();
  for (const part of value.split(/(?<=\/)(?!\/)|(?= )/)) {
    if (element.childNodes.length) element.append(document.createElement("wbr"));
    element.append(part);
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

// ---- copying ---------------------------------------------------------------------

// navigator.clipboard needs a secure context (https, or localhost); a server reached
// as http://host:8000 is not one, so fall back to selecting the text and execCommand.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Denied (no focus, no permission): try the old way.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.top = "0";
  area.style.left = "0";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

function selectContents(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function onCopyClick(event) {
  const button = event.target.closest(".copy-button");
  if (!button) return;
  const field = button.closest(".copy-field");
  const source = field && field.querySelector(".copy-value");
  if (!source) return;
  const copied = await copyText(source.textContent);
  if (!copied) selectContents(source); // so that Ctrl+C / ⌘C does it
  button.dataset.state = copied ? "copied" : "failed";
  button.textContent = copied ? "Copied" : `Press ${COPY_KEYS}`;
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => {
    delete button.dataset.state;
    button.textContent = "Copy";
  }, COPIED_MS);
}

// ---- the player ------------------------------------------------------------------

class Player {
  constructor(video, note) {
    this.video = video;
    this.note = note;
    this.hls = null;
    this.source = null;
    this.retryTimer = null;
    this.video.addEventListener("playing", () => {
      setText(this.note, "");
      this.video.controls = true; // only once there is something to control
    });
    this.video.addEventListener("waiting", () => {
      if (this.video.readyState < 2) setText(this.note, "Buffering…");
    });
  }

  // Plays `source` (an HLS URL) from now on; does nothing if it already does.
  play(source) {
    if (source === this.source) return;
    this.stop();
    this.source = source;
    setText(this.note, "Starting…");
    if (window.Hls && Hls.isSupported()) {
      this.startHlsJs(source);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      this.video.src = source; // Safari plays HLS itself
      this.autoplay();
    } else {
      setText(this.note, "This browser cannot play HLS.");
    }
  }

  startHlsJs(source) {
    const hls = new Hls({ backBufferLength: 30 });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.autoplay());
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || hls !== this.hls) return;
      console.warn("lpms: playback error, retrying", data.type, data.details);
      setText(this.note, "Reconnecting…");
      this.retry();
    });
    hls.loadSource(source);
    hls.attachMedia(this.video);
  }

  autoplay() {
    const started = this.video.play();
    if (started && started.catch) {
      started.catch((error) => {
        if (error.name !== "NotAllowedError") return; // interrupted by a new load
        this.video.controls = true;
        setText(this.note, "Press play to start.");
      });
    }
  }

  retry() {
    const source = this.source;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.source = null;
      this.play(source);
    }, PLAYER_RETRY_MS);
  }

  // Starts again from the live edge (the publisher came back on the same ID).
  restart() {
    const source = this.source;
    this.stop();
    if (source) this.play(source);
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
    this.source = null;
  }
}

// ---- a stream's card ---------------------------------------------------------------

class Card {
  constructor(stream) {
    const template = $("stream-template");
    this.root = template.content.firstElementChild.cloneNode(true);
    this.root.dataset.streamId = stream.id;
    this.fields = {};
    for (const node of this.root.querySelectorAll("[data-field]")) {
      this.fields[node.dataset.field] = node;
    }
    const video = this.root.querySelector("video");
    video.setAttribute("aria-label", `Player for ${stream.id}`);
    this.player = new Player(video, this.fields["player-note"]);
    this.source = null; // the HLS URL, once the stream has a segment
    this.visible = true;
    this.offscreenTimer = null;
    this.trackRows = [];
    this.uptime = 0;
    this.uptimeAt = performance.now();
    setText(this.fields["player-note"], "Waiting for the first segment…");
  }

  update(stream) {
    const f = this.fields;
    const uptime = isNumber(stream.uptime_s) ? stream.uptime_s : 0;
    const republished = uptime + 1 < this.uptime; // the clock went back: a new publish
    this.uptime = uptime;
    this.uptimeAt = performance.now();
    setText(f.id, stream.id);
    this.tick();

    const publisher = stream.publisher || {};
    const from = publisher.address ? `from ${publisher.address}` : "";
    setText(f.publisher, [`Published over ${protocolName(publisher.protocol) || "RTMP"}`, from]
      .filter(Boolean).join(" "));

    const tracks = Array.isArray(stream.tracks) ? stream.tracks : [];
    const total = tracks.reduce((sum, t) => sum + (isNumber(t.bitrate) ? t.bitrate : 0), 0);
    setText(f.bitrate, formatBitrate(total));
    this.updatePlayers(stream.players);
    setText(f["bytes-in"], formatBytes(stream.bytes_in));
    setText(f["bytes-out"], formatBytes(stream.bytes_out));
    this.updateTracks(tracks);
    const renditions = Array.isArray(stream.renditions) ? stream.renditions : [];
    this.updateRenditions(renditions);

    const urls = stream.urls || {};
    setBreakableText(f["rtmp-url"], urls.rtmp || "");
    setBreakableText(f["hls-url"], urls.hls ? absoluteUrl(urls.hls) : "");
    setBreakableText(f["obs-server"], urls.obs_server || "");
    setText(f["obs-key"], urls.obs_key || "");

    // A stream's playlist exists once its first segment does (a rendition has a
    // bandwidth from then on); before that a player would only get 404s.
    const ready = renditions.some((r) => isNumber(r.bandwidth) && r.bandwidth > 0);
    this.source = ready && urls.hls ? urls.hls : null;
    if (this.source && this.visible) {
      if (republished) this.player.restart();
      else this.player.play(this.source);
    }
  }

  // A card out of sight for OFFSCREEN_STOP_MS stops its player, so that a page of
  // many streams only downloads the ones a person can see; back in sight, it
  // starts again at the live edge.
  setVisible(visible) {
    this.visible = visible;
    clearTimeout(this.offscreenTimer);
    if (visible) {
      if (this.source) this.player.play(this.source);
    } else {
      this.offscreenTimer = setTimeout(() => this.player.stop(), OFFSCREEN_STOP_MS);
    }
  }

  // Between refreshes the uptime runs on the page's clock.
  tick() {
    const elapsed = (performance.now() - this.uptimeAt) / 1000;
    setText(this.fields.uptime, formatDuration(this.uptime + elapsed));
  }

  updatePlayers(players) {
    const counts = players && typeof players === "object" ? players : {};
    const entries = Object.entries(counts).filter(([, n]) => isNumber(n));
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    setText(this.fields["players-total"], String(total));
    // Every protocol is listed by the API; the page names those with players.
    const playing = entries.filter(([, n]) => n > 0);
    setText(this.fields.players, playing.map(([p, n]) => `${n} ${protocolName(p)}`).join(" · "));
  }

  updateTracks(tracks) {
    const rows = tracks.length
      ? tracks.map((t) => [trackLabel(t.kind), trackText(t), false])
      : [["Tracks", "Waiting for the publisher's first frames…", true]];
    const details = this.fields.details;
    const anchor = this.fields["renditions-row"];
    while (this.trackRows.length > rows.length) this.trackRows.pop().root.remove();
    rows.forEach(([label, text, missing], index) => {
      let row = this.trackRows[index];
      if (!row) {
        const root = element("div", "detail");
        row = { root, dt: element("dt"), dd: element("dd") };
        root.append(row.dt, row.dd);
        details.insertBefore(root, anchor);
        this.trackRows.push(row);
      }
      setText(row.dt, label);
      setText(row.dd, text);
      row.dd.classList.toggle("detail-missing", missing);
    });
  }

  updateRenditions(renditions) {
    const list = this.fields.renditions;
    const items = renditions.length ? renditions : [null];
    while (list.children.length > items.length) list.lastElementChild.remove();
    items.forEach((rendition, index) => {
      let chip = list.children[index];
      if (!chip) {
        chip = element("li", "chip");
        chip.append(element("span", "chip-name"), element("span", "chip-info"));
        list.append(chip);
      }
      const [name, info] = chip.children;
      chip.classList.toggle("chip-none", rendition === null);
      if (rendition === null) {
        setText(name, "");
        setText(info, "None yet");
        return;
      }
      const size = isNumber(rendition.height) && rendition.height > 0
        ? `${rendition.height}p` : null;
      const details = [size, formatBitrate(rendition.bandwidth)].filter((s) => s && s !== "–");
      setText(name, rendition.name || "rendition");
      setText(info, details.length ? ` ${details.join(" · ")}` : "");
      chip.title = formatSize(rendition.width, rendition.height) || "";
    });
  }

  remove() {
    clearTimeout(this.offscreenTimer);
    visibility.unobserve(this.root);
    this.player.stop();
    this.root.remove();
  }
}

// ---- the page ----------------------------------------------------------------------

async function getJson(path) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(path, {
      cache: "no-store",
      signal: controller.signal,
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

function setConnection(state, text) {
  const connection = $("connection");
  if (connection.dataset.state !== state) connection.dataset.state = state;
  setText($("connection-text"), text);
}

function renderServer() {
  if (!server) return;
  setText($("server-version"), server.version ? `v${server.version}` : "–");
  const parts = [];
  const hls = server.hls || {};
  if (isNumber(hls.segment_duration)) {
    const live = isNumber(hls.window) ? `, ${hls.window} in the live window` : "";
    parts.push(`HLS ${hls.segment_duration} s segments${live}${hls.record ? ", recorded" : ""}`);
  }
  const transcode = server.transcode || {};
  const profiles = Array.isArray(transcode.profiles) ? transcode.profiles : [];
  parts.push(profiles.length
    ? `Transcoding to ${profiles.join(", ")}${transcode.accel ? ` (${transcode.accel})` : ""}`
    : "No transcoding");
  const auth = server.auth || {};
  if (auth.publish_key || auth.hook) parts.push("Publishing needs authorization");
  setText($("server-config"), parts.join(" · "));
  renderHowto();
}

function renderHowto() {
  setBreakableText($("howto-server"), `${rtmpBase()}/stream`);
  setBreakableText($("howto-ffmpeg"),
    `ffmpeg -re -i input.mp4 -c copy -f flv ${rtmpBase()}/stream/test`);
  const auth = (server && server.auth) || {};
  const notes = [];
  if (auth.publish_key) {
    notes.push("This server asks for a publish key: add ?key=KEY to the URL, "
      + "or use test_KEY as the stream key.");
  }
  if (auth.hook) notes.push("Each publish is checked by the server's authorization hook.");
  setText($("howto-auth"), notes.join(" "));
  $("howto-auth").hidden = notes.length === 0;
}

function renderStreams(streams) {
  const container = $("streams");
  const live = new Set();
  let previous = null;
  for (const stream of streams) {
    if (!stream || typeof stream.id !== "string") continue;
    live.add(stream.id);
    let card = cards.get(stream.id);
    if (!card) {
      card = new Card(stream);
      cards.set(stream.id, card);
      // New cards go after the card before them; existing cards never move (moving
      // a playing <video> around the document can interrupt it).
      const next = previous ? previous.root.nextSibling : container.firstChild;
      container.insertBefore(card.root, next);
      visibility.observe(card.root);
    }
    card.update(stream);
    previous = card;
  }
  for (const [id, card] of cards) {
    if (!live.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  $("empty").hidden = cards.size > 0;
  const count = cards.size;
  setText($("server-streams"), String(count));
  document.title = count ? `(${count}) lpms · live streams` : "lpms · live streams";
}

async function refreshStreams() {
  try {
    const body = await getJson("/api/streams");
    renderStreams(Array.isArray(body.streams) ? body.streams : []);
    streamsSeenAt = performance.now();
    setConnection("ok", "Connected");
  } catch {
    setConnection("lost", "Reconnecting…");
  }
}

async function loadServer() {
  try {
    server = await getJson("/api/server");
    server.seenAt = performance.now();
    renderServer();
    tick();
  } catch {
    setTimeout(loadServer, REFRESH_MS); // the server facts are worth another try
  }
}

function tick() {
  for (const card of cards.values()) card.tick();
  if (server && isNumber(server.uptime_s)) {
    const elapsed = (performance.now() - server.seenAt) / 1000;
    setText($("server-uptime"), formatDuration(server.uptime_s + elapsed));
  }
  if (streamsSeenAt && performance.now() - streamsSeenAt > 3 * REFRESH_MS) {
    setConnection("lost", "Reconnecting…");
  }
}

async function refreshLoop() {
  await refreshStreams();
  setTimeout(refreshLoop, REFRESH_MS);
}

function start() {
  document.addEventListener("click", onCopyClick);
  renderHowto();
  loadServer();
  refreshLoop();
  setInterval(tick, TICK_MS);
}

start();
