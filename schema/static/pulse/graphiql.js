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

  var headers = {};
  var csrfToken = Cookies.get("csrftoken");
  if (csrfToken) {
    headers["x-csrftoken"] = csrfToken;
  }

  var fetcher = GraphiQL.createFetcher({
    url: fetchURL,
    headers: headers,
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
