// /docs: Swagger UI served from this machine when it is installed (fastapi-offline), otherwise a
// plain list of every route and parameter read from /openapi.json. No CDN either way.
"use strict";

(function () {
  if (typeof window.SwaggerUIBundle === "function") {
    window.SwaggerUIBundle({
      url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    });
    return;
  }
  const root = document.getElementById("plain-docs");
  root.hidden = false;

  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function resolve(spec, schema) {
    if (schema && schema.$ref) {
      return schema.$ref.split("/").slice(1).reduce((node, key) => node[key], spec);
    }
    return schema || {};
  }

  fetch("/openapi.json").then((r) => r.json()).then((spec) => {
    root.appendChild(el("h1", spec.info.title + " " + spec.info.version));
    root.appendChild(el("p", spec.info.description || ""));
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const section = el("section");
        section.appendChild(el("h2", method.toUpperCase() + " " + path));
        section.appendChild(el("p", op.summary || ""));
        const rows = [];
        for (const p of op.parameters || []) rows.push([p.name, p.in, p.description || ""]);
        const content = (op.requestBody && op.requestBody.content) || {};
        for (const [type, media] of Object.entries(content)) {
          const props = resolve(spec, media.schema).properties || {};
          for (const [name, prop] of Object.entries(props)) {
            rows.push([name, type, resolve(spec, prop).description || prop.description || ""]);
          }
        }
        if (rows.length) {
          const table = el("table");
          const head = el("tr");
          ["parameter", "in", "description"].forEach((h) => head.appendChild(el("th", h)));
          table.appendChild(head);
          for (const row of rows) {
            const tr = el("tr");
            row.forEach((cell) => tr.appendChild(el("td", cell)));
            table.appendChild(tr);
          }
          section.appendChild(table);
        }
        root.appendChild(section);
      }
    }
  });
})();
