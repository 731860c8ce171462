// cleancut WebUI: one page over the native API (/api/options, /api/models, /api/limits,
// /api/remove). The option controls are drawn from GET /api/options; photos wait in a queue and
// go to the server one at a time; the result is drawn on a <canvas> (compare, zoom, pan,
// backgrounds, brushes) and saved from the page itself (zip.js for "Download all").
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form");
  const fileInput = $("file");
  const drop = $("drop");
  const runButton = $("run");
  const runAllButton = $("run-all");
  const statusLine = $("status");
  const errorBox = $("error");
  const optionsBox = $("options");
  const queuePanel = $("queue-panel");
  const queueList = $("queue");
  const results = $("results");
  const stage = $("stage");
  const canvas = $("view");
  const divider = $("divider");
  const ctx = canvas.getContext("2d");

  const EXTENSIONS = { "image/png": "png", "image/webp": "webp", "image/jpeg": "jpg" };
  const CHOICE_LABELS = { png: "PNG", webp: "WebP", jpeg: "JPEG" };
  const ZOOM_STEPS = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16];
  const MAX_ZOOM = 16; // 1600 %
  const MAX_RETRIES = 30; // 503 / 429 answers with Retry-After before giving up on a photo
  const STAGE_BG = "#dde1e7";

  let limits = null;
  let optionRows = []; // the rows of GET /api/options the WebUI shows
  const modelInfo = {}; // name -> description, from GET /api/models (optional)

  // --- API keys: asked for on the first 401, kept in sessionStorage (this tab only) ---------
  const KEY_NAME = "cleancut.apiKey";
  const keyForm = $("key-form");
  const keyInput = $("api-key");
  const keyMessage = $("key-message");
  let keyWanted = null; // the pending request for a key, shared by every call that got a 401

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_NAME);
    } catch (err) {
      return null;
    }
  }

  function askForKey(rejected) {
    if (!keyWanted) {
      keyWanted = new Promise((resolve) => {
        keyMessage.textContent = rejected
          ? "That API key was not accepted. Enter a valid key."
          : "This server asks for an API key. It is kept in this tab only, until you close it.";
        keyMessage.classList.toggle("rejected", rejected);
        keyInput.value = "";
        keyForm.hidden = false;
        keyInput.focus();
        const submitted = (event) => {
          event.preventDefault();
          const key = keyInput.value.trim();
          if (!key) {
            keyInput.focus();
            return;
          }
          try {
            sessionStorage.setItem(KEY_NAME, key);
          } catch (err) {
            // storage refused (private mode): the key cannot be kept; it is asked for again
          }
          keyForm.removeEventListener("submit", submitted);
          keyForm.hidden = true;
          keyInput.value = "";
          keyWanted = null;
          resolve(key);
        };
        keyForm.addEventListener("submit", submitted);
      });
    }
    return keyWanted;
  }

  // fetch() for the API: sends the key when there is one; on 401 forgets it and asks again.
  async function api(path, init) {
    let key = storedKey();
    for (;;) {
      const headers = new Headers((init && init.headers) || {});
      if (key) headers.set("X-API-Key", key);
      const response = await fetch(path, Object.assign({}, init, { headers: headers }));
      if (response.status !== 401) return response;
      if (key && storedKey() === key) sessionStorage.removeItem(KEY_NAME);
      key = (await askForKey(Boolean(key))) || storedKey();
    }
  }

  function megabytes(bytes) {
    return (bytes / 1e6).toLocaleString(undefined, { maximumFractionDigits: 1 }) + " MB";
  }

  // Plain words for the API's stable error codes; the server's detail fills in the rest.
  function explain(code, detail) {
    switch (code) {
      case "invalid_file_type":
        return "That file is not an image cleancut can read. Choose a JPEG, PNG, WebP, BMP, TIFF or GIF image.";
      case "failed_to_read_image":
        return "That image looks damaged or incomplete, so it cannot be read. Try another copy of it.";
      case "file_too_large":
        return "That file is too large" + (limits ? " (the limit is " + megabytes(limits.max_upload_bytes) + ")" : "") + ". Choose a smaller image.";
      case "resolution_too_high":
        return "That image has too many pixels" + (limits ? " (the limit is " + limits.max_megapixels + " megapixels)" : "") + ". Resize it and try again.";
      case "overloaded":
        return "The server is busy with other images right now. Wait a few seconds and try again.";
      case "not_ready":
        return "The server is still starting up. Try again in a few seconds.";
      case "rate_limited":
        return "Too many images in a short time for this server. Wait a minute and try again.";
      case "shutting_down":
        return "The server is shutting down. Try again once it is back.";
      case "processing_timeout":
        return "This image took too long to process. Try a smaller image or turn off alpha matting.";
      case "model_not_installed":
        return "That model is not installed on the server. Choose another model.";
      case "unknown_model":
        return "The server does not know that model. Choose another model.";
      case "invalid_format":
        return "JPEG cannot keep transparency: tick “Background colour” or “Mask only”, or choose PNG or WebP. (A background chosen under the picture works too, with Save as JPEG.)";
      default:
        return detail || "Something went wrong. Please try again.";
    }
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return explain(body.errors[0].code, body.errors[0].detail);
    } catch (err) {
      return explain("", "The server answered " + response.status + ".");
    }
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function stem(name) {
    const base = (name || "image").replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "_");
    return base || "image";
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  // --- Task A: the option controls, drawn from GET /api/options -----------------------------
  // One control per row with webui: true, sent under the row's `field`. The model and choice
  // rows are selects, booleans checkboxes, integers number inputs with the row's bounds, colours
  // a colour input with a checkbox that turns it on. Integers named after a boolean row
  // (alpha_matting_* after alpha_matting) go in a collapsed <details> below it; the other
  // integers and colours go in a collapsed "More options". A row of a type this page does not
  // know gets a text input, so a new option shows up without a new page.
  function controlId(row) {
    // the model select keeps its historic id (other tests and scripts use #model)
    return row.type === "model" ? "model" : "opt-" + row.name;
  }

  function helpFor(row, id) {
    return row.help ? el("small", { className: "help", id: id + "-help", text: row.help }) : null;
  }

  function control(row) {
    const id = controlId(row);
    const help = row.type === "model" ? null : helpFor(row, id);
    const described = help ? id + "-help" : null;
    let wrap;
    if (row.type === "model" || row.type === "choice") {
      const select = el("select", { id: id, name: row.field, "aria-describedby": described });
      for (const choice of row.choices || []) {
        const label = row.type === "choice" ? CHOICE_LABELS[choice] || choice.toUpperCase() : choice;
        select.appendChild(el("option", { value: choice, text: label, selected: choice === row.default }));
      }
      wrap = el("div", { className: "field" }, [el("label", { for: id, text: row.label }), select]);
      if (row.type === "model") {
        const about = el("small", { className: "help", id: "model-about" });
        select.setAttribute("aria-describedby", "model-about");
        wrap.appendChild(about);
        const describe = () => { about.textContent = modelInfo[select.value] || ""; };
        select.addEventListener("change", describe);
        wrap.describe = describe;
        if (!(row.choices || []).length) {
          showError("No model is installed on the server. Install one with: cleancut models pull u2net");
        }
      }
    } else if (row.type === "boolean") {
      const box = el("input", { type: "checkbox", id: id, name: row.field, checked: row.default === true,
                                "aria-describedby": described });
      wrap = el("div", { className: "check-field" }, [el("label", { className: "check" },
        [box, document.createTextNode(" " + row.label)])]);
    } else if (row.type === "integer") {
      const input = el("input", { type: "number", id: id, name: row.field, step: 1, inputmode: "numeric",
                                  min: row.minimum, max: row.maximum, "aria-describedby": described,
                                  value: row.default === null || row.default === undefined ? null : row.default,
                                  placeholder: row.default === null || row.default === undefined ? "default" : null });
      wrap = el("div", { className: "field" }, [el("label", { for: id, text: row.label }), input]);
    } else if (row.type === "color") {
      const on = el("input", { type: "checkbox", id: id + "-on", checked: Boolean(row.default),
                               "aria-describedby": described });
      const value = typeof row.default === "string" && /^#[0-9a-f]{6}$/i.test(row.default) ? row.default : "#ffffff";
      const picker = el("input", { type: "color", id: id, name: row.field, value: value,
                                   "aria-label": row.label, disabled: !row.default });
      on.addEventListener("change", () => { picker.disabled = !on.checked; });
      wrap = el("div", { className: "color-row" }, [
        el("label", { className: "check" }, [on, document.createTextNode(" " + row.label)]), picker]);
    } else {
      const input = el("input", { type: "text", id: id, name: row.field, "aria-describedby": described,
                                  value: row.default === null || row.default === undefined ? null : String(row.default) });
      wrap = el("div", { className: "field" }, [el("label", { for: id, text: row.label }), input]);
    }
    if (help) wrap.appendChild(help);
    wrap.dataset.option = row.name;
    return wrap;
  }

  function buildOptions(rows) {
    optionRows = rows;
    optionsBox.textContent = "";
    optionsBox.appendChild(el("legend", { text: "Options" }));
    const booleans = rows.filter((r) => r.type === "boolean").map((r) => r.name);
    const sub = {}; // boolean name -> its <details>
    let more = null;
    for (const row of rows) {
      const node = control(row);
      const owner = row.type === "integer"
        ? booleans.find((name) => row.name.startsWith(name + "_")) : undefined;
      if (owner) {
        if (!sub[owner]) {
          const ownerRow = rows.find((r) => r.name === owner);
          sub[owner] = el("details", { className: "sub", id: "more-" + owner },
            [el("summary", { text: ownerRow.label + " settings" })]);
          const ownerNode = optionsBox.querySelector('[data-option="' + owner + '"]');
          if (ownerNode) ownerNode.after(sub[owner]);
          else optionsBox.appendChild(sub[owner]);
        }
        sub[owner].appendChild(node);
      } else if (["model", "choice", "boolean"].includes(row.type)) {
        if (more) optionsBox.insertBefore(node, more);
        else optionsBox.appendChild(node);
      } else {
        if (!more) {
          more = el("details", { className: "sub", id: "more-options" }, [el("summary", { text: "More options" })]);
          optionsBox.appendChild(more);
        }
        more.appendChild(node);
      }
    }
    const model = optionsBox.querySelector('[data-option="model"]');
    if (model && model.describe) model.describe();
  }

  async function loadOptions() {
    try {
      const response = await api("/api/options");
      if (!response.ok) throw new Error(String(response.status));
      const body = await response.json();
      buildOptions(body.options.filter((row) => row.webui));
    } catch (err) {
      $("options-loading").textContent = "The options could not be loaded.";
      showError("Cannot reach the server to list its options. Is cleancut still running?");
    }
    try { // descriptions only: the page works without them
      const response = await api("/api/models");
      if (!response.ok) return;
      for (const model of (await response.json()).models) modelInfo[model.name] = model.description || "";
      const select = $("model");
      if (select) {
        for (const option of select.options) option.title = modelInfo[option.value] || "";
        select.dispatchEvent(new Event("change"));
      }
    } catch (err) {
      // no descriptions
    }
  }

  // The form fields of every option control, each under its row's field.
  function optionFields() {
    const fields = [];
    for (const row of optionRows) {
      const input = $(controlId(row));
      if (!input) continue;
      if (row.type === "boolean") {
        fields.push([row.field, input.checked ? "true" : "false"]);
      } else if (row.type === "color") {
        const on = $(controlId(row) + "-on");
        if (on && on.checked) fields.push([row.field, input.value]);
      } else if (input.value !== "") {
        fields.push([row.field, input.value]);
      }
    }
    return fields;
  }

  async function loadLimits() {
    try {
      const response = await api("/api/limits");
      if (response.ok) limits = await response.json();
    } catch (err) {
      limits = null;
    }
  }

  // --- the queue: every photo in order, one request at a time -------------------------------
  const items = [];
  const jobs = []; // pending {item, hints}
  let running = false;
  let selected = null;
  let nextId = 1;

  function pending(item) {
    return Boolean(item && item.job);
  }

  function newItem(file) {
    const item = {
      id: nextId++, file: file, name: file.name || "pasted image", state: "queued", message: "",
      original: null, result: null, strokes: [], hintLayer: null, job: null, removed: false,
    };
    const thumbUrl = URL.createObjectURL(file);
    const img = el("img", { alt: "", src: thumbUrl, "data-kind": "original", decoding: "async" });
    img.addEventListener("error", () => img.classList.add("broken"));
    const progress = el("progress", { max: 1, value: 0 });
    const state = el("span", { className: "state" });
    const pick = el("button", { type: "button", className: "pick" }, [
      el("span", { className: "thumb checker" }, [img]),
      el("span", { className: "name", text: item.name }), progress, state]);
    const remove = el("button", { type: "button", className: "remove", "aria-label": "Remove " + item.name + " from the list", title: "Remove from the list", text: "×" });
    const li = el("li", { className: "item", "data-id": item.id }, [pick, remove]);
    pick.addEventListener("click", () => select(item));
    remove.addEventListener("click", () => removeItem(item));
    item.dom = { li: li, img: img, progress: progress, state: state, pick: pick, thumbUrl: thumbUrl };
    queueList.appendChild(li);
    items.push(item);
    createImageBitmap(file).then((bitmap) => {
      item.original = bitmap;
      if (item === selected) draw();
    }, () => { item.original = null; });
    return item;
  }

  const STATE_WORDS = { queued: "Waiting", working: "Working…", waiting: "Server busy", done: "Done", error: "Failed" };

  function setState(item, state, message) {
    item.state = state;
    item.message = message;
    const dom = item.dom;
    dom.li.dataset.state = state;
    dom.state.textContent = state === "waiting" ? message : STATE_WORDS[state];
    if (state === "working" || state === "waiting") dom.progress.removeAttribute("value");
    else dom.progress.value = state === "done" ? 1 : 0;
    dom.pick.setAttribute("aria-label", item.name + ": " + message);
    if (item === selected) showSelected();
    summarise();
  }

  function summarise() {
    const done = items.filter((i) => i.state === "done").length;
    const failed = items.filter((i) => i.state === "error").length;
    const left = items.length - done - failed;
    const words = [items.length + (items.length === 1 ? " photo" : " photos")];
    if (done) words.push(done + " done");
    if (left) words.push(left + " to go");
    if (failed) words.push(failed + " failed");
    $("queue-summary").textContent = words.join(" · ");
    queuePanel.hidden = items.length === 0;
    runAllButton.disabled = !items.some((i) => !pending(i));
    $("download-all").disabled = done === 0;
    $("download-all").textContent = done > 1 ? "Download all " + done + " (.zip)" : "Download all (.zip)";
  }

  function enqueue(item, options) {
    const front = Boolean(options && options.front);
    const hints = Boolean(options && options.hints);
    if (item.job) {
      if (item.job.active) return; // the request for it is on its way: let it finish
      jobs.splice(jobs.indexOf(item.job), 1);
    }
    const job = { item: item, hints: hints, active: false, controller: null };
    item.job = job;
    if (front) jobs.unshift(job);
    else jobs.push(job);
    setState(item, "queued", hints ? "Waiting to apply your fixes…" : "Waiting for its turn…");
    pump();
  }

  async function pump() {
    if (running) return;
    running = true;
    try {
      while (jobs.length) {
        const job = jobs.shift();
        job.active = true;
        try {
          await run(job);
        } finally {
          if (job.item.job === job) job.item.job = null;
          if (job.item === selected) showSelected();
          summarise();
        }
      }
    } finally {
      running = false;
    }
  }

  // Retry-After: seconds, or an HTTP date; null when absent or unreadable.
  function retryAfter(response) {
    const value = (response.headers.get("Retry-After") || "").trim();
    if (!value) return null;
    let seconds = /^\d+$/.test(value) ? parseInt(value, 10) : (Date.parse(value) - Date.now()) / 1000;
    if (!isFinite(seconds)) return null;
    return Math.min(300, Math.max(1, Math.ceil(seconds)));
  }

  async function run(job) {
    const item = job.item;
    const data = new FormData();
    data.append("file", item.file, item.file.name || "pasted.png");
    for (const [name, value] of optionFields()) data.append(name, value);
    if (job.hints) data.append("hints", await hintsBlob(item), "hints.png");
    const doing = job.hints ? "Applying your fixes…" : "Removing the background…";
    for (let attempt = 0; ; attempt++) {
      if (item.removed) return;
      setState(item, "working", doing);
      job.controller = new AbortController();
      let response;
      try {
        response = await api("/api/remove", { method: "POST", body: data, signal: job.controller.signal });
      } catch (err) {
        if (!item.removed) fail(item, "Cannot reach the server. Is cleancut still running?");
        return;
      }
      if ((response.status === 503 || response.status === 429) && attempt < MAX_RETRIES) {
        const wait = retryAfter(response);
        if (wait !== null) {
          response.body && response.body.cancel().catch(() => {});
          const why = response.status === 503 ? "Server busy" : "Too many requests";
          for (let left = wait; left > 0; left--) {
            if (item.removed) return;
            setState(item, "waiting", why + ", retrying in " + left + " s");
            await sleep(1000);
          }
          continue;
        }
      }
      if (!response.ok) {
        fail(item, await errorText(response));
        return;
      }
      try {
        await receive(item, response, job.hints);
      } catch (err) {
        if (!item.removed) fail(item, "The result could not be read. Please try again.");
      }
      return;
    }
  }

  function fail(item, message) {
    setState(item, "error", message);
  }

  function downloadName(disposition) {
    const match = /filename="?([^";]+)"?/i.exec(disposition || "");
    return match ? match[1] : null;
  }

  async function receive(item, response, hinted) {
    const blob = await response.blob();
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none" });
    if (item.removed) {
      bitmap.close();
      return;
    }
    const h = response.headers;
    const width = parseInt(h.get("X-Width"), 10) || bitmap.width;
    const height = parseInt(h.get("X-Height"), 10) || bitmap.height;
    const ext = EXTENSIONS[blob.type] || "png";
    const confidence = parseFloat(h.get("X-Confidence"));
    const old = item.result;
    item.result = {
      blob: blob, bitmap: bitmap, width: width, height: height, url: URL.createObjectURL(blob),
      model: h.get("X-Model") || "", warning: h.get("X-Cleancut-Warning") || "",
      confidence: isFinite(confidence) ? Math.min(1, Math.max(0, confidence)) : null,
      filename: downloadName(h.get("Content-Disposition")) || stem(item.file.name) + "-cutout." + ext,
    };
    item.composite = null;
    if (item.hintLayer && (item.hintLayer.width !== width || item.hintLayer.height !== height)) {
      item.strokes = [];
      item.hintLayer = null;
    }
    const img = item.dom.img;
    img.src = item.result.url;
    img.dataset.kind = "result";
    img.classList.remove("broken");
    if (item.dom.thumbUrl) {
      URL.revokeObjectURL(item.dom.thumbUrl);
      item.dom.thumbUrl = null;
    }
    if (old) {
      old.bitmap.close();
      URL.revokeObjectURL(old.url);
    }
    const done = (hinted ? "Fixes applied: " : "Done: ") + width + " × " + height + " px with " + item.result.model + ".";
    if (item === selected && !old) fit();
    setState(item, "done", done);
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []).filter(Boolean);
    if (!files.length) return;
    clearError();
    let first = null;
    for (const file of files) {
      const item = newItem(file);
      first = first || item;
      if (limits && file.size > limits.max_upload_bytes) {
        setState(item, "error", explain("file_too_large"));
        continue;
      }
      enqueue(item);
    }
    $("file-name").textContent = files.length === 1 ? files[0].name || "pasted image" : files.length + " photos added";
    select(first);
    // on a phone the queue and the result are below the options: bring them into view
    if (window.matchMedia("(max-width: 800px)").matches) {
      queuePanel.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  function removeItem(item) {
    item.removed = true;
    if (item.job) {
      if (item.job.active && item.job.controller) item.job.controller.abort();
      const at = jobs.indexOf(item.job);
      if (at >= 0) jobs.splice(at, 1);
      item.job = null;
    }
    const at = items.indexOf(item);
    items.splice(at, 1);
    item.dom.li.remove();
    if (item.dom.thumbUrl) URL.revokeObjectURL(item.dom.thumbUrl);
    if (item.result) {
      item.result.bitmap.close();
      URL.revokeObjectURL(item.result.url);
    }
    if (item.original) item.original.close();
    if (selected === item) select(items[Math.min(at, items.length - 1)] || null);
    summarise();
  }

  // --- the selected photo --------------------------------------------------------------------
  function select(item) {
    selected = item;
    for (const other of items) {
      if (other === item) other.dom.pick.setAttribute("aria-current", "true");
      else other.dom.pick.removeAttribute("aria-current");
    }
    if (item && item.result) fit();
    showSelected();
    if (item) item.dom.li.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function showSelected() {
    const item = selected;
    const busy = pending(item);
    runButton.disabled = !item || busy;
    statusLine.textContent = item ? item.message : "";
    statusLine.classList.toggle("busy", Boolean(item) && (item.state === "working" || item.state === "waiting"));
    form.setAttribute("aria-busy", busy ? "true" : "false");
    results.setAttribute("aria-busy", busy ? "true" : "false");
    if (item && item.state === "error") showError(item.message);
    else clearError();
    const result = item && item.result;
    const wasHidden = results.hidden;
    results.hidden = !result;
    $("download").disabled = !result;
    updateBrushButtons();
    if (!result) return;
    $("info").textContent = result.width + " × " + result.height + " px · " + result.model +
      (item.state === "done" || item.state === "error" ? "" : " · showing the previous result");
    const conf = $("confidence");
    conf.hidden = result.confidence === null;
    if (result.confidence !== null) {
      const percent = Math.round(result.confidence * 100);
      $("confidence-text").textContent = "Model confidence " + percent + "%" +
        (result.confidence < 0.5 ? ": check the edges, or fix the cut with the Keep and Erase brushes." : "");
      $("confidence-meter").value = result.confidence;
    }
    const warning = $("warning");
    warning.hidden = !result.warning;
    warning.textContent = result.warning ? "Note from the server: " + result.warning : "";
    canvas.setAttribute("aria-label", "The result for " + item.name + (background.kind === "none"
      ? ", on a transparent background" : ", on the chosen background"));
    if (wasHidden) resize();
    else draw();
  }

  // --- backgrounds, composited here from the cutout already received -------------------------
  const background = { kind: "none", color: "#ffffff", photo: null, version: 0 };

  function readBackground() {
    const chosen = document.querySelector('input[name="bg"]:checked');
    const value = chosen ? chosen.value : "none";
    if (value === "none") background.kind = "none";
    else if (value === "photo" && background.photo) background.kind = "photo";
    else if (value === "custom") {
      background.kind = "color";
      background.color = $("bg-color").value;
    } else if (value.startsWith("#")) {
      background.kind = "color";
      background.color = value;
    } else background.kind = "none";
    background.version++;
    const format = $("download-format");
    const none = background.kind === "none";
    format.options[0].disabled = !none;
    format.options[1].disabled = none;
    format.options[2].disabled = none;
    if (none) format.value = "received";
    else if (format.value === "received") format.value = "png";
    format.disabled = none;
    $("bg-note").textContent = none
      ? "Added here, without running the model again. Transparent saves the file as the server made it."
      : "Saved as shown, on this background.";
    if (selected) showSelected();
  }

  // The result of `item` on the current background, at the result's own size: what is shown
  // and exactly what "Download" saves. Cached for the selected photo.
  function composite(item) {
    const r = item.result;
    if (item.composite && item.composite.version === background.version) return item.composite.canvas;
    const out = document.createElement("canvas");
    out.width = r.width;
    out.height = r.height;
    const g = out.getContext("2d");
    if (background.kind === "color") {
      g.fillStyle = background.color;
      g.fillRect(0, 0, r.width, r.height);
    } else if (background.kind === "photo") {
      const p = background.photo;
      const s = Math.max(r.width / p.width, r.height / p.height); // cover: fill, crop the rest
      const w = p.width * s;
      const h = p.height * s;
      g.imageSmoothingQuality = "high";
      g.drawImage(p, (r.width - w) / 2, (r.height - h) / 2, w, h);
    }
    g.drawImage(r.bitmap, 0, 0, r.width, r.height);
    for (const other of items) if (other !== item) other.composite = null; // keep one
    item.composite = { version: background.version, canvas: out };
    return out;
  }

  function toBlob(source, type, quality) {
    return new Promise((resolve, reject) => source.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("encoding failed"))), type, quality));
  }

  // The file "Download" gives for `item`: the server's bytes when there is no background,
  // else the composite as PNG or JPEG.
  async function fileFor(item) {
    const r = item.result;
    if (background.kind === "none") return { name: r.filename, blob: r.blob };
    const jpeg = $("download-format").value === "jpeg";
    const blob = await toBlob(composite(item), jpeg ? "image/jpeg" : "image/png", 0.92);
    return { name: r.filename.replace(/\.[^.]*$/, "") + (jpeg ? ".jpg" : ".png"), blob: blob };
  }

  function save(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name, className: "visually-hidden" });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function downloadOne() {
    if (!selected || !selected.result) return;
    const file = await fileFor(selected);
    save(file.blob, file.name);
  }

  async function downloadAll() {
    const done = items.filter((i) => i.result);
    if (!done.length) return;
    const button = $("download-all");
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Preparing the zip…";
    try {
      const files = [];
      const taken = new Set();
      for (const item of done) {
        const file = await fileFor(item);
        let name = file.name;
        for (let n = 2; taken.has(name.toLowerCase()); n++) name = file.name.replace(/(\.[^.]*)?$/, "-" + n + "$1");
        taken.add(name.toLowerCase());
        files.push({ name: name, data: new Uint8Array(await file.blob.arrayBuffer()) });
      }
      save(window.CleancutZip.makeZip(files), "cleancut-" + files.length + "-photos.zip");
    } catch (err) {
      showError("The zip could not be made: " + (err && err.message ? err.message : err));
    } finally {
      button.textContent = label;
      summarise();
    }
  }

  // --- the view: one canvas, compare divider, zoom and pan ------------------------------------
  const view = { scale: 1, cx: 0, cy: 0, fitted: true, divider: 0.5, compare: false, tool: "move", hover: null };
  let cssW = 0;
  let cssH = 0;
  let dpr = 1;
  let checker = null;

  function checkerPattern() {
    if (!checker) {
      const tile = document.createElement("canvas");
      tile.width = 16;
      tile.height = 16;
      const g = tile.getContext("2d");
      g.fillStyle = "#ffffff";
      g.fillRect(0, 0, 16, 16);
      g.fillStyle = "#cbcbcb";
      g.fillRect(0, 0, 8, 8);
      g.fillRect(8, 8, 8, 8);
      checker = ctx.createPattern(tile, "repeat");
    }
    return checker;
  }

  function fitScale() {
    const r = selected && selected.result;
    if (!r || !cssW || !cssH) return 1;
    return Math.min(cssW / r.width, cssH / r.height);
  }

  function minZoom() {
    return Math.min(0.1, fitScale());
  }

  function fit() {
    const r = selected && selected.result;
    if (!r) return;
    view.scale = fitScale();
    view.cx = r.width / 2;
    view.cy = r.height / 2;
    view.fitted = true;
    draw();
  }

  function clampView() {
    const r = selected && selected.result;
    if (!r) return;
    view.scale = Math.min(MAX_ZOOM, Math.max(minZoom(), view.scale));
    view.cx = Math.min(r.width, Math.max(0, view.cx));
    view.cy = Math.min(r.height, Math.max(0, view.cy));
  }

  // Zoom to `scale`, keeping the picture's point under (x, y) (CSS px in the canvas) in place.
  function zoomAt(scale, x, y) {
    if (x === undefined) {
      x = cssW / 2;
      y = cssH / 2;
    }
    const ix = view.cx + (x - cssW / 2) / view.scale;
    const iy = view.cy + (y - cssH / 2) / view.scale;
    view.fitted = false;
    view.scale = Math.min(MAX_ZOOM, Math.max(minZoom(), scale));
    view.cx = ix - (x - cssW / 2) / view.scale;
    view.cy = iy - (y - cssH / 2) / view.scale;
    clampView();
    draw();
  }

  function zoomStep(direction) {
    const now = view.scale;
    const steps = ZOOM_STEPS.concat([fitScale()]).sort((a, b) => a - b);
    const next = direction > 0 ? steps.find((s) => s > now * 1.001) : steps.slice().reverse().find((s) => s < now / 1.001);
    zoomAt(next === undefined ? (direction > 0 ? MAX_ZOOM : minZoom()) : next);
  }

  function toImage(x, y) {
    return [view.cx + (x - cssW / 2) / view.scale, view.cy + (y - cssH / 2) / view.scale];
  }

  function resize() {
    const box = stage.getBoundingClientRect();
    if (!box.width || !box.height) return;
    cssW = box.width;
    cssH = box.height;
    dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    if (view.fitted) fit();
    else {
      clampView();
      draw();
    }
  }

  let frame = 0;
  // The controls follow the view at once; the pixels follow on the next frame.
  function draw() {
    const r = selected && selected.result;
    const comparing = view.compare && view.tool === "move";
    divider.hidden = !(r && comparing);
    $("tag-before").hidden = divider.hidden;
    $("tag-after").hidden = divider.hidden;
    divider.style.left = view.divider * 100 + "%";
    $("zoom-level").textContent = Math.round(view.scale * 100) + "%";
    canvas.dataset.view = [view.scale, view.cx, view.cy].map((v) => v.toFixed(4)).join(" ");
    if (!frame) frame = requestAnimationFrame(paint);
  }

  function paint() {
    frame = 0;
    const W = canvas.width;
    const H = canvas.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.fillStyle = STAGE_BG;
    ctx.fillRect(0, 0, W, H);
    const item = selected;
    const r = item && item.result;
    const brushing = view.tool !== "move";
    const comparing = view.compare && !brushing;
    if (!r) return;
    const s = view.scale * dpr;
    const x0 = W / 2 - view.cx * s;
    const y0 = H / 2 - view.cy * s;
    const w = r.width * s;
    const h = r.height * s;
    // smooth when shrinking; crisp pixels from 200 %, to look closely
    ctx.imageSmoothingEnabled = view.scale < 2;
    ctx.imageSmoothingQuality = "high";
    const split = comparing ? Math.round(view.divider * W) : 0;
    if (brushing) {
      drawChecker(x0, y0, w, h);
      ctx.globalAlpha = 0.35;
      drawOriginal(item, x0, y0, w, h);
      ctx.globalAlpha = 1;
      ctx.drawImage(r.bitmap, x0, y0, w, h);
      if (item.hintLayer) {
        ctx.globalAlpha = 0.55;
        ctx.drawImage(item.hintLayer, x0, y0, w, h);
        ctx.globalAlpha = 1;
      }
      if (view.hover) {
        const radius = brushSize() / 2 * dpr;
        ctx.beginPath();
        ctx.arc(view.hover[0] * dpr, view.hover[1] * dpr, radius, 0, Math.PI * 2);
        ctx.lineWidth = 2 * dpr;
        ctx.strokeStyle = "#ffffff";
        ctx.stroke();
        ctx.lineWidth = 1 * dpr;
        ctx.strokeStyle = view.tool === "keep" ? "#0a7d32" : "#b3261e";
        ctx.stroke();
      }
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(split, 0, W - split, H);
    ctx.clip();
    if (background.kind === "none") {
      drawChecker(x0, y0, w, h);
      ctx.drawImage(r.bitmap, x0, y0, w, h);
    } else {
      ctx.drawImage(composite(item), x0, y0, w, h);
    }
    ctx.restore();
    if (split > 0) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, 0, split, H);
      ctx.clip();
      drawOriginal(item, x0, y0, w, h);
      ctx.restore();
    }
  }

  function drawChecker(x, y, w, h) {
    ctx.fillStyle = checkerPattern();
    ctx.fillRect(x, y, w, h);
  }

  function drawOriginal(item, x, y, w, h) {
    if (item.original) {
      ctx.drawImage(item.original, x, y, w, h);
    } else {
      ctx.fillStyle = "#9aa3b0";
      ctx.fillRect(x, y, w, h);
    }
  }

  function setDivider(fraction) {
    view.divider = Math.min(1, Math.max(0, fraction));
    const percent = Math.round(view.divider * 100);
    divider.setAttribute("aria-valuenow", String(percent));
    divider.setAttribute("aria-valuetext", percent + "% original");
    draw();
  }

  // pointers: one drags (pan, or paints with a brush), two pinch-zoom; the divider drags itself
  const pointers = new Map();
  let gesture = null;
  let spaceDown = false;

  function local(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  function startPinch() {
    const [a, b] = Array.from(pointers.values());
    const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    gesture = { type: "pinch", dist: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1, scale: view.scale,
                anchor: toImage(mid[0], mid[1]) };
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!selected || !selected.result) return;
    canvas.focus({ preventScroll: true });
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch (err) {
      // a pointer the browser no longer tracks: the gesture works without capture
    }
    pointers.set(event.pointerId, local(event));
    if (pointers.size === 2) {
      if (gesture && gesture.type === "paint") endStroke();
      startPinch();
    } else if (pointers.size === 1) {
      const [x, y] = local(event);
      if (view.tool !== "move" && event.button === 0 && !spaceDown) startStroke(x, y);
      else gesture = { type: "pan", x: x, y: y, cx: view.cx, cy: view.cy };
    }
    event.preventDefault();
  });

  canvas.addEventListener("pointermove", (event) => {
    const p = local(event);
    if (view.tool !== "move") {
      view.hover = p;
      draw();
    }
    if (!pointers.has(event.pointerId)) return;
    pointers.set(event.pointerId, p);
    if (!gesture) return;
    if (gesture.type === "pan") {
      view.fitted = false;
      view.cx = gesture.cx - (p[0] - gesture.x) / view.scale;
      view.cy = gesture.cy - (p[1] - gesture.y) / view.scale;
      clampView();
      draw();
    } else if (gesture.type === "paint") {
      extendStroke(p[0], p[1]);
    } else if (gesture.type === "pinch" && pointers.size === 2) {
      const [a, b] = Array.from(pointers.values());
      const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      view.fitted = false;
      view.scale = Math.min(MAX_ZOOM, Math.max(minZoom(), gesture.scale * Math.hypot(a[0] - b[0], a[1] - b[1]) / gesture.dist));
      view.cx = gesture.anchor[0] - (mid[0] - cssW / 2) / view.scale;
      view.cy = gesture.anchor[1] - (mid[1] - cssH / 2) / view.scale;
      clampView();
      draw();
    }
  });

  function pointerEnd(event) {
    if (!pointers.delete(event.pointerId)) return;
    if (gesture && gesture.type === "paint") endStroke();
    if (pointers.size === 1 && gesture && gesture.type === "pinch") {
      const [p] = Array.from(pointers.values());
      gesture = { type: "pan", x: p[0], y: p[1], cx: view.cx, cy: view.cy };
    } else if (pointers.size === 0) gesture = null;
  }
  canvas.addEventListener("pointerup", pointerEnd);
  canvas.addEventListener("pointercancel", pointerEnd);
  canvas.addEventListener("pointerleave", () => {
    if (view.hover) {
      view.hover = null;
      draw();
    }
  });

  canvas.addEventListener("wheel", (event) => {
    if (!selected || !selected.result) return;
    event.preventDefault();
    const [x, y] = local(event);
    const unit = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? cssH : 1;
    const speed = event.ctrlKey ? 0.01 : 0.0015; // ctrl+wheel: a touchpad's pinch
    zoomAt(view.scale * Math.exp(-event.deltaY * unit * speed), x, y);
  }, { passive: false });

  canvas.addEventListener("keydown", (event) => {
    if (!selected || !selected.result) return;
    const step = (event.shiftKey ? 200 : 40) / view.scale;
    const keys = {
      "+": () => zoomStep(1), "=": () => zoomStep(1), "-": () => zoomStep(-1), "_": () => zoomStep(-1),
      "0": () => fit(), "1": () => zoomAt(1),
      ArrowLeft: () => { view.cx -= step; }, ArrowRight: () => { view.cx += step; },
      ArrowUp: () => { view.cy -= step; }, ArrowDown: () => { view.cy += step; },
    };
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    view.fitted = false;
    action();
    clampView();
    draw();
  });

  divider.addEventListener("pointerdown", (event) => {
    try {
      divider.setPointerCapture(event.pointerId);
    } catch (err) {
      // as above
    }
    gesture = { type: "divider" };
    event.preventDefault();
    event.stopPropagation();
  });
  divider.addEventListener("pointermove", (event) => {
    if (!gesture || gesture.type !== "divider") return;
    const box = stage.getBoundingClientRect();
    setDivider((event.clientX - box.left) / box.width);
  });
  const dividerEnd = () => {
    if (gesture && gesture.type === "divider") gesture = null;
  };
  divider.addEventListener("pointerup", dividerEnd);
  divider.addEventListener("pointercancel", dividerEnd);
  divider.addEventListener("keydown", (event) => {
    const small = event.shiftKey ? 0.1 : 0.02;
    const moves = {
      ArrowLeft: -small, ArrowDown: -small, ArrowRight: small, ArrowUp: small, PageDown: -0.1, PageUp: 0.1,
    };
    if (event.key in moves) setDivider(view.divider + moves[event.key]);
    else if (event.key === "Home") setDivider(0);
    else if (event.key === "End") setDivider(1);
    else return;
    event.preventDefault();
  });

  // --- brushes: Keep / Erase hints painted over the photo --------------------------------------
  const KEEP_COLOUR = "#19c24a";
  const ERASE_COLOUR = "#e5372f";

  function brushSize() {
    return parseInt($("brush-size").value, 10) || 40;
  }

  function hintLayer(item) {
    const r = item.result;
    if (!item.hintLayer) {
      item.hintLayer = document.createElement("canvas");
      item.hintLayer.width = r.width;
      item.hintLayer.height = r.height;
    }
    return item.hintLayer;
  }

  function paintStroke(g, stroke, colour, from) {
    const pts = stroke.points;
    g.fillStyle = colour;
    g.strokeStyle = colour;
    g.lineWidth = stroke.radius * 2;
    g.lineCap = "round";
    g.lineJoin = "round";
    if (pts.length === 1) {
      g.beginPath();
      g.arc(pts[0][0], pts[0][1], stroke.radius, 0, Math.PI * 2);
      g.fill();
      return;
    }
    g.beginPath();
    const start = Math.max(0, (from || 0) - 1);
    g.moveTo(pts[start][0], pts[start][1]);
    for (let i = start + 1; i < pts.length; i++) g.lineTo(pts[i][0], pts[i][1]);
    g.stroke();
  }

  function redrawHints(item) {
    const layer = hintLayer(item);
    const g = layer.getContext("2d");
    g.clearRect(0, 0, layer.width, layer.height);
    for (const stroke of item.strokes) paintStroke(g, stroke, stroke.mode === "keep" ? KEEP_COLOUR : ERASE_COLOUR);
  }

  function startStroke(x, y) {
    const item = selected;
    const stroke = { mode: view.tool, radius: brushSize() / 2 / view.scale, points: [toImage(x, y)] };
    gesture = { type: "paint", stroke: stroke, item: item };
    paintStroke(hintLayer(item).getContext("2d"), stroke, stroke.mode === "keep" ? KEEP_COLOUR : ERASE_COLOUR);
    draw();
  }

  function extendStroke(x, y) {
    const stroke = gesture.stroke;
    const from = stroke.points.length;
    stroke.points.push(toImage(x, y));
    paintStroke(hintLayer(gesture.item).getContext("2d"), stroke, stroke.mode === "keep" ? KEEP_COLOUR : ERASE_COLOUR, from);
    draw();
  }

  function endStroke() {
    const { item, stroke } = gesture;
    item.strokes.push(stroke);
    gesture = null;
    redrawHints(item); // one clean pass (the live segments overlap at their joints)
    updateBrushButtons();
    draw();
  }

  function updateBrushButtons() {
    const item = selected;
    const strokes = Boolean(item && item.strokes.length);
    $("undo").disabled = !strokes;
    $("clear-hints").disabled = !strokes;
    $("apply").disabled = !strokes || pending(item) || !(item && item.result);
  }

  // The hint image the API takes: the photo's size, white = keep, black = remove, transparent
  // elsewhere; edges made hard (no half-transparent or grey pixels from anti-aliasing).
  async function hintsBlob(item) {
    const r = item.result;
    const out = document.createElement("canvas");
    out.width = r.width;
    out.height = r.height;
    const g = out.getContext("2d");
    for (const stroke of item.strokes) paintStroke(g, stroke, stroke.mode === "keep" ? "#ffffff" : "#000000");
    const data = g.getImageData(0, 0, r.width, r.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] >= 128) {
        const v = px[i] >= 128 ? 255 : 0;
        px[i] = v;
        px[i + 1] = v;
        px[i + 2] = v;
        px[i + 3] = 255;
      } else {
        px[i] = px[i + 1] = px[i + 2] = px[i + 3] = 0;
      }
    }
    g.putImageData(data, 0, 0);
    return toBlob(out, "image/png");
  }

  function setTool(tool) {
    view.tool = tool;
    stage.classList.toggle("brushing", tool !== "move");
    stage.dataset.tool = tool;
    $("view-hint").textContent = tool === "move"
      ? "Drag to move, wheel or pinch to zoom. Keys on the picture: + − 0 1 and the arrows."
      : "Paint over what to " + (tool === "keep" ? "keep" : "remove") + ", then Apply fixes. Hold Space and drag to move.";
    view.hover = null;
    draw();
  }

  // --- wiring ----------------------------------------------------------------------------------
  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (selected) enqueue(selected, { front: true });
  });
  runAllButton.addEventListener("click", () => {
    for (const item of items) if (!pending(item)) enqueue(item);
  });
  $("clear-queue").addEventListener("click", () => {
    for (const item of items.slice()) removeItem(item);
    $("file-name").textContent = "";
  });
  queueList.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const buttons = Array.from(queueList.querySelectorAll(".pick"));
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const next = buttons[at + (event.key === "ArrowRight" ? 1 : -1)];
    if (next) {
      event.preventDefault();
      next.focus();
      next.click();
    }
  });

  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, () => drop.classList.add("dragging")));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("dragging")));
  // photos may be dropped anywhere on the page (and the browser must not open them instead)
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
  // the drop zone is a label; Enter and Space open the file chooser like a button
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    const images = files.filter((f) => f.type.startsWith("image/"));
    const chosen = images.length ? images : files;
    if (chosen.length) {
      event.preventDefault();
      addFiles(chosen);
    }
  });

  $("zoom-in").addEventListener("click", () => zoomStep(1));
  $("zoom-out").addEventListener("click", () => zoomStep(-1));
  $("zoom-fit").addEventListener("click", () => fit());
  $("zoom-actual").addEventListener("click", () => zoomAt(1));
  $("compare").addEventListener("change", (event) => {
    view.compare = event.target.checked;
    if (view.compare && view.tool !== "move") {
      $("tool-move").checked = true;
      setTool("move");
    }
    draw();
  });
  document.querySelectorAll('input[name="tool"]').forEach((radio) =>
    radio.addEventListener("change", () => setTool(radio.value)));
  $("brush-size").addEventListener("input", () => draw());
  $("undo").addEventListener("click", () => {
    if (!selected || !selected.strokes.length) return;
    selected.strokes.pop();
    redrawHints(selected);
    updateBrushButtons();
    draw();
  });
  $("clear-hints").addEventListener("click", () => {
    if (!selected) return;
    selected.strokes = [];
    redrawHints(selected);
    updateBrushButtons();
    draw();
  });
  $("apply").addEventListener("click", () => {
    if (selected && selected.strokes.length) enqueue(selected, { front: true, hints: true });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === " " && event.target === canvas) {
      spaceDown = true;
      event.preventDefault();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " ") spaceDown = false;
  });

  document.querySelectorAll('input[name="bg"]').forEach((radio) => radio.addEventListener("change", readBackground));
  const customChip = $("bg-custom-chip");
  customChip.style.backgroundColor = $("bg-color").value;
  $("bg-color").addEventListener("input", () => {
    customChip.style.backgroundColor = $("bg-color").value;
    $("bg-custom").checked = true;
    readBackground();
  });
  $("bg-file").addEventListener("change", async () => {
    const file = $("bg-file").files[0];
    $("bg-file").value = "";
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      if (background.photo) background.photo.close();
      background.photo = bitmap;
      const chip = $("bg-photo-chip");
      if (chip.dataset.url) URL.revokeObjectURL(chip.dataset.url);
      chip.dataset.url = URL.createObjectURL(file);
      chip.style.backgroundImage = 'url("' + chip.dataset.url + '")';
      $("bg-photo").disabled = false;
      $("bg-photo").checked = true;
      readBackground();
      $("bg-note").textContent = "Background photo: " + (file.name || "pasted image") + ", scaled to cover.";
    } catch (err) {
      $("bg-note").textContent = "That file is not a photo this browser can show. Choose a JPEG, PNG or WebP.";
    }
  });
  $("download-format").addEventListener("change", () => draw());
  $("download").addEventListener("click", () => downloadOne());
  $("download-all").addEventListener("click", () => downloadAll());

  new ResizeObserver(() => resize()).observe(stage);
  window.addEventListener("resize", () => resize());

  readBackground();
  setTool("move");
  loadLimits();
  loadOptions();
})();
