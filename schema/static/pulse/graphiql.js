// GraphiQL for Pulse: queries and mutations over HTTP (with the CSRF cookie),
// subscriptions over WebSocket (graphql-transport-ws), all assets served locally.
(function () {
  "use strict";

  var EXAMPLE_QUERY = [
    "# Pulse: open this page in a second tab, subscribe here,",
    "# then run createStatusChange in the other tab (after login).",
    "subscription Live {",
    "  activity {",
    "    cursor kind verb message",
    "    actor { username }",
    "    event { id ... on StatusChange { status } ... on Comment { body } }",
    "  }",
    "}",
    "",
  ].join("\n");

  var fetchURL = window.location.href.split("?")[0].split("#")[0];
  var wsURL = new URL(fetchURL);
  wsURL.protocol = wsURL.protocol === "https:" ? "wss:" : "ws:";

  // The CSRF token is read from its cookie at every request, not once: Django rotates
  // it at login, so a token read when the page loaded fails the first mutation after
  // signing in from this page.
  function fetchWithCsrf(input, init) {
    var options = Object.assign({ credentials: "same-origin" }, init || {});
    var headers = new Headers(options.headers || {});
    var csrfToken = Cookies.get("csrftoken");
    if (csrfToken) {
      headers.set("x-csrftoken", csrfToken);
    }
    options.headers = headers;
    return window.fetch(input, options);
  }

  var fetcher = GraphiQL.createFetcher({
    url: fetchURL,
    fetch: fetchWithCsrf,
    subscriptionUrl: wsURL.toString(),
  });

  var explorer = GraphiQLPluginExplorer.explorerPlugin();
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: EXAMPLE_QUERY,
      defaultEditorToolsVisibility: true,
      plugins: [explorer],
      inputValueDeprecation: true,
    })
  );
})();
