// The model page: read a photo, send it to this server's REST API, show the answer.
"use strict";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
let photo = null; // {name, b64}
let asked = 0; // answers to older requests are dropped

function model() {
  return config.models.find((m) => m.name === $("model").value);
}

function describe(m) {
  const size = m.any_size ? `any size (resized to ${m.size[0]}x${m.size[1]})` : `${m.size[0]}x${m.size[1]}`;
  const out = m.classifies ? `${m.classes} classes` : `a ${m.dim}-float feature vector`;
  return `${m.handle}: ${out}; photos of ${size}. Weights: ${m.weights}.`;
}

function show(kind, text) {
  $("error").hidden = kind !== "error";
  $("error").textContent = kind === "error" ? text : "";
  $("status").textContent = kind === "error" ? "" : text;
}

function mb(bytes) {
  return `${(bytes / (1 << 20)).toFixed(1)} MB`;
}

async function ask() {
  const m = model();
  if (!photo || !m) return;
  const ticket = ++asked;
  const image = { b64: photo.b64 };
  const [verb, body] = m.classifies
    ? ["classify", { examples: [{ image }] }]
    : ["predict", { instances: [image] }];
  const text = JSON.stringify(body);
  // The server refuses larger bodies anyway; saying so here spares the upload.
  if (text.length > config.max_body_bytes) {
    show("error", `${photo.name} makes a ${mb(text.length)} request; this server accepts at most ` +
      `${mb(config.max_body_bytes)} (start it with a larger --max-body-mb, or send a smaller photo).`);
    return;
  }
  show("status", `asking ${m.name}…`);
  $("top5").replaceChildren();
  $("vector").hidden = true;
  $("cam").hidden = true;
  const started = performance.now();
  let answer;
  try {
    const response = await fetch(`/v1/models/${encodeURIComponent(m.name)}:${verb}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: text,
    });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (e) {
    if (ticket === asked) show("error", `${m.name} could not answer: ${e.message}`);
    return;
  }
  if (ticket !== asked) return;
  const ms = Math.round(performance.now() - started);
  if (m.classifies) {
    for (const [label, score] of answer.result[0]) $("top5").append(row(label, score));
  } else {
    vector(answer.predictions[0]);
  }
  show("status", `${m.name} answered in ${ms} ms`);
  document.body.dataset.answered = String(ticket); // tests wait on this
  await Promise.all([activation(m, ticket, null), similar(m, ticket)]);
}

// The class activation map (Grad-CAM at the final end point) over the crop the network sees.
async function activation(m, ticket, cls) {
  const fig = $("cam");
  $("top5").classList.toggle("explains", Boolean(m.explains));
  if (!m.explains) { fig.hidden = true; return; }
  $("cam-caption").textContent = "finding where it looks…";
  let answer;
  try {
    const response = await fetch(`/models/${encodeURIComponent(m.name)}/explain`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(cls === null ? { b64: photo.b64 } : { b64: photo.b64, class: cls }),
    });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (e) {
    if (ticket === asked) $("cam-caption").textContent = `No map: ${e.message}`;
    return;
  }
  if (ticket !== asked) return;
  await draw(answer);
  // Rows carry their class (from the map's own top 5, which ranks as :classify does): click one for its map.
  const rows = [...$("top5").children];
  answer.predictions.forEach((p, i) => {
    if (rows[i] && rows[i].dataset.label === p.label) rows[i].dataset.class = String(p.class);
  });
  for (const r of rows) r.classList.toggle("mapped", r.dataset.class === String(answer.class));
  $("cam-caption").textContent = `Where ${m.name} sees “${answer.label}” (class activation map; ` +
    "click a label for its map)";
  fig.hidden = false;
  fig.dataset.label = answer.label;
  document.body.dataset.explained = String(Number(document.body.dataset.explained || 0) + 1);
}

async function draw(answer) {
  const img = $("preview");
  await img.decode().catch(() => {}); // drawn from the photo as the page shows it
  const [h, w] = [img.naturalHeight, img.naturalWidth];
  const f = answer.central_fraction; // TF's central_crop: offsets truncated, the rest kept
  const top = Math.trunc((h - h * f) / 2), left = Math.trunc((w - w * f) / 2);
  const [ch, cw] = [h - 2 * top, w - 2 * left];
  const scale = Math.min(1, 320 / cw);
  const canvas = $("cam-canvas");
  canvas.width = Math.round(cw * scale);
  canvas.height = Math.round(ch * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, left, top, cw, ch, 0, 0, canvas.width, canvas.height);
  // The map at its own resolution, blue (no evidence, transparent) to red (the most), smoothly scaled up.
  const map = answer.heatmap, rows = map.length, cols = map[0].length;
  const cells = document.createElement("canvas");
  cells.width = cols;
  cells.height = rows;
  const data = new ImageData(cols, rows);
  map.flat().forEach((v, i) => {
    data.data.set([255 * v, 255 * (1 - Math.abs(2 * v - 1)), 255 * (1 - v), 255 * 0.55 * v], 4 * i);
  });
  cells.getContext("2d").putImageData(data, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(cells, 0, 0, canvas.width, canvas.height);
}

// With an index of photos (serve --index), the indexed photos nearest to this one.
async function similar(m, ticket) {
  const box = $("similar");
  const index = config.index;
  box.hidden = !index;
  if (!index) return;
  $("neighbours").replaceChildren();
  if (!index.models.includes(m.name)) {
    $("similar-status").textContent =
      `The index holds features of ${index.handle}: choose ${index.models.join(" or ")} to search it.`;
    return;
  }
  $("similar-status").textContent = `searching ${index.count} photos…`;
  let answer;
  try {
    const response = await fetch(`/models/${encodeURIComponent(m.name)}/similar`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ b64: photo.b64, k: 8 }),
    });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (e) {
    if (ticket === asked) $("similar-status").textContent = `The search failed: ${e.message}`;
    return;
  }
  if (ticket !== asked) return;
  for (const n of answer.neighbours) {
    const li = document.createElement("li");
    const img = Object.assign(document.createElement("img"), { src: n.thumbnail, alt: n.name, loading: "lazy" });
    const score = Object.assign(document.createElement("span"), {
      className: "similarity", textContent: n.similarity.toFixed(3),
    });
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: n.name });
    li.append(img, score, name);
    $("neighbours").append(li);
  }
  $("similar-status").textContent = `cosine similarity of the feature vectors, among ${index.count} photos`;
  document.body.dataset.similar = String(ticket);
}

function row(label, score) {
  const li = document.createElement("li");
  li.dataset.label = label;
  const name = Object.assign(document.createElement("span"), { className: "label", textContent: label });
  const value = Object.assign(document.createElement("span"), {
    className: "score", textContent: `${(100 * score).toFixed(1)}%`,
  });
  value.dataset.score = String(score);
  const track = Object.assign(document.createElement("div"), { className: "track" });
  const bar = Object.assign(document.createElement("div"), { className: "bar" });
  bar.style.width = `${Math.max(0.5, 100 * score)}%`;
  track.append(bar);
  li.append(name, value, track);
  return li;
}

function vector(v) {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const head = v.slice(0, 8).map((x) => x.toFixed(4)).join(", ");
  const box = $("vector");
  box.replaceChildren(
    Object.assign(document.createElement("p"), { textContent: `${v.length} floats, L2 norm ${norm.toFixed(3)}` }),
    Object.assign(document.createElement("code"), { textContent: `[${head}, …]` }),
  );
  box.hidden = false;
}

function read(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    show("error", `${file.name} is not an image (${file.type}); choose a JPEG, PNG, GIF or BMP photo.`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const url = reader.result;
    photo = { name: file.name, b64: url.slice(url.indexOf(",") + 1) };
    $("preview").src = url;
    $("preview").hidden = false;
    ask();
  };
  reader.onerror = () => show("error", `${file.name} could not be read.`);
  reader.readAsDataURL(file);
}

function init() {
  const select = $("model");
  for (const m of config.models) select.append(new Option(m.name, m.name, false, m.name === config.selected));
  const changed = () => {
    const m = model();
    $("about").textContent = m ? describe(m) : "This server serves no models.";
    if (m) history.replaceState(null, "", `/models/${encodeURIComponent(m.name)}`);
    ask();
  };
  select.addEventListener("change", changed);
  $("top5").addEventListener("click", (e) => {
    const li = e.target.closest("li");
    const m = model();
    if (li && li.dataset.class && m && m.explains) activation(m, asked, Number(li.dataset.class));
  });
  $("file").addEventListener("change", (e) => read(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    read(e.dataTransfer.files[0]);
  });
  changed();
}

init();
