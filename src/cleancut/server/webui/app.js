// cleancut WebUI: one page over the native API (/api/models, /api/limits, /api/remove).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form");
  const fileInput = $("file");
  const drop = $("drop");
  const runButton = $("run");
  const statusLine = $("status");
  const errorBox = $("error");
  const results = $("results");
  const original = $("original");
  const result = $("result");
  const download = $("download");
  const useBg = $("use_bgcolor");
  const bgcolor = $("bgcolor");

  let current = null; // the chosen File
  let originalUrl = null;
  let resultUrl = null;
  let limits = null;

  const EXTENSIONS = { "image/png": "png", "image/webp": "webp", "image/jpeg": "jpg" };

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
      case "processing_timeout":
        return "This image took too long to process. Try a smaller image or turn off alpha matting.";
      case "model_not_installed":
        return "That model is not installed on the server. Choose another model.";
      case "unknown_model":
        return "The server does not know that model. Choose another model.";
      case "invalid_format":
        return "JPEG cannot keep transparency: tick “Background colour” or “Mask only”, or choose PNG or WebP.";
      default:
        return detail || "Something went wrong. Please try again.";
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

  function setBusy(busy) {
    runButton.disabled = busy || !current;
    runButton.textContent = busy ? "Working…" : "Remove background";
    form.setAttribute("aria-busy", busy ? "true" : "false");
    results.setAttribute("aria-busy", busy ? "true" : "false");
    statusLine.classList.toggle("busy", busy);
    statusLine.textContent = busy ? "Removing the background…" : statusLine.textContent;
  }

  function stem(name) {
    const base = (name || "image").replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "_");
    return base || "image";
  }

  async function loadModels() {
    const select = $("model");
    try {
      const response = await api("/api/models");
      const body = await response.json();
      select.textContent = "";
      for (const model of body.models) {
        const option = document.createElement("option");
        option.value = model.name;
        option.textContent = model.name;
        option.title = model.description || "";
        option.selected = model.name === body.default;
        select.appendChild(option);
      }
      if (!body.models.length) {
        showError("No model is installed on the server. Install one with: cleancut models pull u2net");
      }
    } catch (err) {
      select.textContent = "";
      showError("Cannot reach the server to list its models. Is cleancut still running?");
    }
  }

  async function loadLimits() {
    try {
      const response = await api("/api/limits");
      if (response.ok) limits = await response.json();
    } catch (err) {
      limits = null;
    }
  }

  function choose(file) {
    if (!file) return;
    current = file;
    clearError();
    $("file-name").textContent = file.name || "pasted image";
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    originalUrl = URL.createObjectURL(file);
    original.src = originalUrl;
    runButton.disabled = false;
    if (limits && file.size > limits.max_upload_bytes) {
      showError(explain("file_too_large"));
      return;
    }
    run();
  }

  async function run() {
    if (!current) return;
    clearError();
    const data = new FormData();
    data.append("file", current, current.name || "pasted.png");
    const model = $("model").value;
    if (model) data.append("model", model);
    data.append("format", $("format").value);
    data.append("return_mask", $("only_mask").checked ? "true" : "false");
    data.append("alpha_matting", $("alpha_matting").checked ? "true" : "false");
    data.append("post_process_mask", $("post_process_mask").checked ? "true" : "false");
    if (useBg.checked) data.append("bgcolor", bgcolor.value);
    setBusy(true);
    try {
      const response = await api("/api/remove", { method: "POST", body: data });
      if (!response.ok) {
        let code = "", detail = "";
        try {
          const body = await response.json();
          code = body.errors[0].code;
          detail = body.errors[0].detail;
        } catch (err) {
          detail = "The server answered " + response.status + ".";
        }
        statusLine.textContent = "";
        showError(explain(code, detail));
        return;
      }
      const blob = await response.blob();
      if (resultUrl) URL.revokeObjectURL(resultUrl);
      resultUrl = URL.createObjectURL(blob);
      result.src = resultUrl;
      const kind = $("only_mask").checked ? "mask" : "cutout";
      const ext = EXTENSIONS[blob.type] || "png";
      download.href = resultUrl;
      download.download = stem(current.name) + "-" + kind + "." + ext;
      results.hidden = false;
      statusLine.textContent = "Done: " + response.headers.get("X-Width") + " × " +
        response.headers.get("X-Height") + " px with " + response.headers.get("X-Model") + ".";
    } catch (err) {
      statusLine.textContent = "";
      showError("Cannot reach the server. Is cleancut still running?");
    } finally {
      setBusy(false);
    }
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  useBg.addEventListener("change", () => { bgcolor.disabled = !useBg.checked; });

  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => {
    drop.classList.remove("dragging");
  }));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) choose(file);
  });
  // the drop zone is a label; Enter and Space open the file chooser like a button
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    const image = items.find((f) => f.type.startsWith("image/")) || items[0];
    if (image) {
      event.preventDefault();
      choose(image);
    }
  });

  loadLimits();
  loadModels();
})();
