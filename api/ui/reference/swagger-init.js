// Starts Swagger UI on /docs. FastAPI's page does this in an inline script, which the CSP forbids; the
// settings come from the page's JSON block (a data block, never executed), written by api/ui.py.
(() => {
  const config = JSON.parse(document.getElementById("swagger-ui-config").textContent);
  const { oauth2RedirectPath, ...options } = config;
  window.ui = window.SwaggerUIBundle({
    ...options,
    oauth2RedirectUrl: window.location.origin + oauth2RedirectPath,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
