// /docs: Swagger UI, served from this machine (fastapi-offline); no CDN.
"use strict";

window.SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
});
