// audioscene viewer: upload a file, draw what the model says, follow playback. No dependencies.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const ROW_PX = 18; // height of one event row
const $ = (id) => document.getElementById(id);
let current = null; // the last analysis
let maxUploadMb = null;

function colourOf(label) {
  const names = current ? [...current.curves.series.map((s) => s.label), ...current.events.map((e) => e.label)] : [];
  const unique = [...new Set(names)];
  return COLOURS[Math.max(unique.indexOf(label), 0) % COLOURS.length];
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

async function loadInfo() {
  const response = await fetch("/api/info");
  const info = await response.json();
  maxUploadMb = info.max_upload_mb;
  $("model-info").textContent = `${info.labels.length} classes · frames every ${info.frame_hop} s · windows of ${info.window_s.toFixed(2)} s · uploads up to ${info.max_upload_mb} MB`;
}

async function analyse(file) {
  $("error").hidden = true;
  if (maxUploadMb !== null && file.size > maxUploadMb * 1024 * 1024) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the limit is ${maxUploadMb} MB.`);
    return;
  }
  $("status").textContent = `Analysing ${file.name} …`;
  let response, body;
  try {
    response = await fetch("/api/analyze", { method: "POST", body: file, headers: { "X-Filename": file.name } });
    body = await response.json();
  } catch (err) {
    showError(`The server did not answer (${err}).`);
    return;
  }
  if (!response.ok) {
    showError(body.error || `The server answered ${response.status}.`);
    return;
  }
  current = body;
  $("status").textContent = `${file.name}: ${body.duration.toFixed(1)} s, ${body.events.length} events`;
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
  draw();
}

function draw() {
  const r = current;
  $("result").hidden = false;
  $("filename").textContent = r.filename;
  $("spectrogram").src = r.spectrogram;
  $("tags").innerHTML = "";
  for (const tag of r.tags) {
    const li = document.createElement("li");
    li.className = "tag";
    li.innerHTML = `<span class="label"></span> <b>${tag.score.toFixed(3)}</b><div class="bar" style="width:${(100 * tag.score).toFixed(1)}%"></div>`;
    li.querySelector(".label").textContent = tag.label;
    $("tags").appendChild(li);
  }
  drawEvents(r);
  drawCurves(r);
  drawAxis(r.duration);
  moveCursor(0);
}

function drawEvents(r) {
  const track = $("events-track");
  track.querySelectorAll(".event").forEach((e) => e.remove());
  const rows = [...new Set(r.events.map((e) => e.label))];
  track.style.height = `${Math.max(rows.length, 1) * ROW_PX + 4}px`;
  for (const event of r.events) {
    const bar = document.createElement("div");
    bar.className = "event";
    bar.title = `${event.label}: ${event.onset.toFixed(2)}–${event.offset.toFixed(2)} s`;
    bar.textContent = event.label;
    bar.style.left = `${(100 * event.onset) / r.duration}%`;
    bar.style.width = `${(100 * (event.offset - event.onset)) / r.duration}%`;
    bar.style.top = `${rows.indexOf(event.label) * ROW_PX + 2}px`;
    bar.style.background = colourOf(event.label);
    track.appendChild(bar);
  }
}

function drawCurves(r) {
  const canvas = $("curves");
  canvas.width = canvas.clientWidth || 1000;
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath();
  ctx.moveTo(0, height / 2);
  ctx.lineTo(width, height / 2);
  ctx.stroke();
  $("legend").innerHTML = "";
  const times = r.curves.times;
  for (const series of r.curves.series) {
    ctx.strokeStyle = colourOf(series.label);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    series.values.forEach((value, i) => {
      const x0 = (times[i] / r.duration) * width;
      const x1 = (Math.min(times[i] + r.frame_hop, r.duration) / r.duration) * width;
      const y = height - value * (height - 4) - 2;
      if (i === 0) ctx.moveTo(x0, y); else ctx.lineTo(x0, y);
      ctx.lineTo(x1, y);
    });
    ctx.stroke();
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${colourOf(series.label)}"></i>`;
    item.append(series.label);
    $("legend").appendChild(item);
  }
}

function drawAxis(duration) {
  const axis = $("axis");
  axis.innerHTML = "";
  const step = [0.5, 1, 2, 5, 10, 30, 60, 300, 600].find((s) => duration / s <= 10) || 1800;
  for (let t = 0; t <= duration; t += step) {
    const tick = document.createElement("span");
    tick.style.left = `${(100 * t) / duration}%`;
    tick.textContent = `${t} s`;
    axis.appendChild(tick);
  }
}

function moveCursor(time) {
  if (!current) return;
  const percent = `${Math.min(100, (100 * time) / current.duration)}%`;
  document.querySelectorAll(".cursor").forEach((c) => (c.style.left = percent));
}

function follow() {
  moveCursor($("player").currentTime);
  if (!$("player").paused) requestAnimationFrame(follow);
}

function seekFrom(event) {
  if (!current) return;
  const box = event.currentTarget.getBoundingClientRect();
  $("player").currentTime = ((event.clientX - box.left) / box.width) * current.duration;
  moveCursor($("player").currentTime);
}

window.addEventListener("DOMContentLoaded", () => {
  loadInfo().catch((err) => showError(`Cannot reach the server (${err}).`));
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => e.target.files[0] && analyse(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) analyse(e.dataTransfer.files[0]);
  });
  $("player").addEventListener("play", () => requestAnimationFrame(follow));
  $("player").addEventListener("seeked", () => moveCursor($("player").currentTime));
  ["spectrogram-track", "events-track", "curves-track"].forEach((id) => $(id).addEventListener("click", seekFrom));
  window.addEventListener("resize", () => current && drawCurves(current));
});
