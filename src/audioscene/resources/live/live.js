// The live page: server-sent messages (spec, scores, line) drawn as they come; see live_page.py.
"use strict";

const SPAN_S = 30;  // seconds shown by the spectrogram and the score lines
const COLOURS = ["#e53935", "#1e88e5", "#43a047", "#8e24aa", "#fb8c00"];
const spec = document.getElementById("spectrogram");
const specContext = spec.getContext("2d");
const scores = document.getElementById("scores");
const scoresContext = scores.getContext("2d");
const series = new Map();  // label -> [[time, score], ...]
let latest = 0;  // stream time of the newest audio drawn
let shownLabels = [];

document.getElementById("span-s").textContent = SPAN_S;

function colour(value) {  // 0..255 -> a dark-to-bright palette
  const x = value / 255;
  return [Math.round(255 * Math.min(1, 1.6 * x)), Math.round(255 * Math.max(0, 1.6 * x - 0.5)),
          Math.round(255 * Math.max(0, 2.5 * x - 1.5))];
}

function drawSpectrogram(message) {
  const columns = message.columns;
  const pxPerS = spec.width / SPAN_S;
  const width = Math.max(1, Math.round(columns.length * message.column_s * pxPerS));
  specContext.drawImage(spec, -width, 0);  // scroll left
  const image = specContext.createImageData(columns.length, columns[0].length);
  columns.forEach((column, x) => column.forEach((value, y) => {
    const [r, g, b] = colour(value);
    const i = 4 * (y * columns.length + x);
    image.data[i] = r; image.data[i + 1] = g; image.data[i + 2] = b; image.data[i + 3] = 255;
  }));
  const tmp = document.createElement("canvas");
  tmp.width = columns.length; tmp.height = columns[0].length;
  tmp.getContext("2d").putImageData(image, 0, 0);
  specContext.drawImage(tmp, spec.width - width, 0, width, spec.height);
  latest = Math.max(latest, message.t + columns.length * message.column_s);
}

function addScores(message) {
  shownLabels = message.labels;
  message.labels.forEach((label, k) => {
    if (!series.has(label)) series.set(label, []);
    const points = series.get(label);
    message.values[k].forEach((value, i) => {
      const t = message.t + i * message.hop;
      while (points.length && points[points.length - 1][0] >= t) points.pop();  // a newer window's value
      points.push([t, value]);
    });
    while (points.length && points[0][0] < latest - SPAN_S) points.shift();
  });
  drawScores();
}

function drawScores() {
  const w = scores.width, h = scores.height;
  scoresContext.clearRect(0, 0, w, h);
  scoresContext.strokeStyle = "#ccc";
  scoresContext.beginPath(); scoresContext.moveTo(0, h / 2); scoresContext.lineTo(w, h / 2); scoresContext.stroke();
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  shownLabels.forEach((label, k) => {
    const points = series.get(label) || [];
    scoresContext.strokeStyle = COLOURS[k % COLOURS.length];
    scoresContext.lineWidth = 2;
    scoresContext.beginPath();
    points.forEach(([t, value], i) => {
      const x = w - (latest - t) * w / SPAN_S, y = h - value * h;
      if (i === 0) scoresContext.moveTo(x, y); else scoresContext.lineTo(x, y);
    });
    scoresContext.stroke();
    const item = document.createElement("li");
    item.textContent = label;
    item.style.setProperty("--colour", COLOURS[k % COLOURS.length]);
    legend.appendChild(item);
  });
}

const openRows = [];  // rows of open events (onset lines not yet closed by their event line)

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  cells.forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
  return tr;
}

function addLine(line) {
  const body = document.querySelector("#events tbody");
  const clock = new Date(line.wall * 1000).toLocaleTimeString();
  if (line.kind === "tags") {
    const tags = document.getElementById("tags");
    tags.replaceChildren(...line.tags.map(([label, score]) => {
      const item = document.createElement("li");
      item.textContent = `${label} ${score.toFixed(2)}`;
      return item;
    }));
  } else if (line.kind === "onset") {
    const tr = row([line.label, line.onset.toFixed(2), "…", line.score.toFixed(2), clock], "open event");
    openRows.push({label: line.label, onset: line.onset, tr});
    body.prepend(tr);
  } else if (line.kind === "event") {
    const tr = row([line.label, line.onset.toFixed(2), line.offset.toFixed(2), line.score.toFixed(2), clock], "event");
    // its onset line: the oldest open one of its label that began before it ended
    const k = openRows.findIndex((open) => open.label === line.label && open.onset < line.offset);
    if (k >= 0) {
      openRows[k].tr.replaceWith(tr);
      openRows.splice(k, 1);
    } else {
      body.prepend(tr);
    }
  }
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/stream");
  source.onopen = () => { status.textContent = "live"; status.className = "live"; };
  source.onerror = () => { status.textContent = "connection lost, retrying…"; status.className = "lost"; };
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "spec") drawSpectrogram(message);
    else if (message.type === "scores") addScores(message);
    else if (message.type === "line") addLine(message);
    document.getElementById("clock").textContent = `stream ${latest.toFixed(1)} s`;
  };
}

connect();
