// protoherb web page: identify a specimen, enrol a species, browse the species.
// Plain JS, no build step. Every text from the server is set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setStatus(node, text, kind) {
  node.textContent = text;
  node.className = "status" + (kind ? " " + kind : "");
}

async function errorText(resp) {
  try {
    const j = await resp.json();
    if (j && j.error) return j.error;
  } catch (_) { /* not JSON */ }
  return resp.status + " " + resp.statusText;
}

async function loadInfo() {
  try {
    const r = await fetch("/v1/info");
    info = await r.json();
    $("stats").textContent = info.species + " species · " + info.embedding_dim + "-d embeddings" +
      (info.index_specimens ? " · " + info.index_specimens + " reference specimens" : "");
    $("token-row").hidden = !info.auth_required;
  } catch (e) {
    $("stats").textContent = "Server unreachable";
  }
}

function showPreview(blob) {
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  $("drop-hint").hidden = true;
}

async function identify(blob, name) {
  const status = $("status");
  $("results").replaceChildren();
  $("specimens-block").hidden = true;
  if (!/^image\/(jpeg|png)$/.test(blob.type)) {
    setStatus(status, "That file is not a JPEG or PNG image.", "error");
    return;
  }
  showPreview(blob);
  $("file-name").textContent = name || "";
  setStatus(status, "Identifying…");
  const k = $("k").value;
  let resp;
  try {
    resp = await fetch("/v1/identify?k=" + encodeURIComponent(k), {
      method: "POST", headers: { "Content-Type": blob.type }, body: blob,
    });
  } catch (e) {
    setStatus(status, "Could not reach the server: " + e.message, "error");
    return;
  }
  if (!resp.ok) {
    let msg = await errorText(resp);
    if (resp.status === 503) msg = "The server is busy; try again in a moment. (" + msg + ")";
    setStatus(status, msg, "error");
    return;
  }
  render(await resp.json());
}

function render(res) {
  const list = $("results");
  const species = res.species || [];
  if (species.length === 0) {
    setStatus($("status"), "No species are known yet: enrol one below.", "error");
    return;
  }
  const top = species[0];
  setStatus($("status"), "Most likely " + top.name + " (" + pct(top.probability) + ")", "ok");
  species.forEach((m, i) => {
    const li = el("li", "match" + (i === 0 ? " best" : ""));
    li.dataset.speciesId = m.id;
    li.append(el("span", "rank", String(i + 1)));
    const who = el("div");
    who.append(el("div", "sp-name", m.name));
    who.append(el("div", "sp-tax", [m.genus, m.family].filter(Boolean).join(" · ") +
      " · " + m.count + " specimen" + (m.count === 1 ? "" : "s")));
    li.append(who);
    const right = el("div");
    right.append(el("div", "prob", pct(m.probability)));
    right.append(el("div", "dist", "distance " + fmt(m.distance)));
    li.append(right);
    const bar = el("div", "bar");
    const fill = el("span");
    fill.style.width = Math.max(0.5, 100 * m.probability).toFixed(1) + "%";
    bar.append(fill);
    li.append(bar);
    list.append(li);
  });
  const specimens = res.specimens || [];
  const block = $("specimens-block");
  const grid = $("specimens");
  grid.replaceChildren();
  if (specimens.length > 0) {
    $("specimens-title").textContent = "Nearest reference specimens of " + top.name;
    for (const s of specimens) {
      const fig = el("figure", "specimen");
      const img = el("img");
      img.loading = "lazy";
      img.alt = top.name + ", specimen " + s.id;
      img.src = s.thumbnail_url;
      fig.append(img, el("figcaption", "", "#" + s.id + " · d " + fmt(s.distance)));
      grid.append(fig);
    }
    block.hidden = false;
  }
}

function pct(p) {
  if (p >= 0.995) return (100 * p).toFixed(1) + "%";
  if (p < 0.001) return "<0.1%";
  return (100 * p).toFixed(1) + "%";
}

function fmt(x) {
  if (x === 0) return "0";
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return x.toPrecision(3);
}

function setupDrop() {
  const drop = $("drop"), file = $("file");
  file.addEventListener("change", () => {
    if (file.files.length) identify(file.files[0], file.files[0].name);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); }
  });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    const f = e.dataTransfer.files[0];
    if (f) identify(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    for (const item of e.clipboardData.items) {
      if (item.kind === "file") { identify(item.getAsFile(), "pasted image"); break; }
    }
  });
  $("k").addEventListener("change", () => {
    if (file.files.length) identify(file.files[0], file.files[0].name);
  });
}

function setupEnrol() {
  const form = $("enrol");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("enrol-status"), btn = $("enrol-btn");
    const data = new FormData(form);
    const token = data.get("token");
    data.delete("token");
    const headers = {};
    if (token) headers["Authorization"] = "Bearer " + token;
    btn.disabled = true;
    setStatus(status, "Enrolling…");
    try {
      const r = await fetch("/v1/species", { method: "POST", body: data, headers });
      if (!r.ok) {
        setStatus(status, r.status === 401 ? "A valid access token is needed to enrol." : await errorText(r), "error");
        return;
      }
      const j = await r.json();
      setStatus(status, (j.created ? "Enrolled new species " : "Added " + j.added + " specimen(s) to ") +
        j.species.name + " (id " + j.species.id + ", " + j.species.count + " specimens).", "ok");
      form.reset();
      loadInfo();
      loadSpecies();
    } catch (err) {
      setStatus(status, "Could not reach the server: " + err.message, "error");
    } finally {
      btn.disabled = false;
    }
  });
}

let speciesTimer = 0;
async function loadSpecies() {
  const q = $("species-q").value.trim();
  try {
    const r = await fetch("/v1/species?limit=500&q=" + encodeURIComponent(q));
    const j = await r.json();
    $("species-count").textContent = "(" + j.total + ")";
    const rows = j.species.map((s) => {
      const tr = el("tr");
      tr.append(el("td", "", String(s.id)), el("td", "", s.name), el("td", "", s.genus || ""),
        el("td", "", s.family || ""), el("td", "", String(s.count)));
      return tr;
    });
    $("species-list").replaceChildren(...rows);
  } catch (_) { /* shown by the header */ }
}

// ?image=URL identifies an image fetched from this server (a shareable link; used by the tests).
async function fromQuery() {
  const u = new URLSearchParams(location.search).get("image");
  if (!u) return;
  const url = new URL(u, location.href);
  if (url.origin !== location.origin) {
    setStatus($("status"), "Only images from this server can be loaded by link.", "error");
    return;
  }
  const r = await fetch(url);
  if (!r.ok) {
    setStatus($("status"), "Could not load " + url.pathname + ": " + r.status, "error");
    return;
  }
  const b = await r.blob();
  await identify(b, url.pathname.split("/").pop());
}

setupDrop();
setupEnrol();
$("species-q").addEventListener("input", () => {
  clearTimeout(speciesTimer);
  speciesTimer = setTimeout(loadSpecies, 200);
});
loadInfo().then(fromQuery);
loadSpecies();
