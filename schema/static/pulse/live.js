// Pulse's live page: sign in, post, and watch the activity stream update live.
// Mutations go over HTTP (session cookie + X-CSRFToken); the stream is the `activity`
// subscription over the vendored graphql-ws client. User text is only ever set with
// textContent (the page's CSP enforces Trusted Types, so HTML sinks would throw).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("pulse-config").textContent);
  var MAX_ITEMS = 200;
  var LENGTHS = { status: 280, comment: 5000 };
  var KIND_LABELS = { USER_JOINED: "Joined", STATUS_CHANGE: "Status", COMMENT: "Comment" };

  var ACTIVITY = [
    "subscription Live($after: String) {",
    "  activity(after: $after) {",
    "    cursor kind verb message occurredAt eventId",
    "    actor { username stats { statusCount commentCount } }",
    "    event { id visibility }",
    "  }",
    "}",
  ].join("\n");
  var LOGIN =
    "mutation Login($u: String!, $p: String!) { login(username: $u, password: $p) { user { username } } }";
  var LOGOUT = "mutation Logout { logout }";
  var SIGN_UP =
    "mutation SignUp($i: CreateUserInput!) { createUser(input: $i) { username } }";
  var POST_STATUS =
    "mutation Post($i: CreateStatusChangeInput!) { createStatusChange(input: $i) { id } }";
  var POST_COMMENT =
    "mutation Comment($i: CreateCommentInput!) { createComment(input: $i) { id } }";

  function $(id) {
    return document.getElementById(id);
  }

  // --- HTTP --------------------------------------------------------------------------

  function cookie(name) {
    var prefix = name + "=";
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].trim();
      if (part.indexOf(prefix) === 0) return decodeURIComponent(part.slice(prefix.length));
    }
    return "";
  }

  function errorText(errors) {
    var error = errors[0] || {};
    var fields = (error.extensions && error.extensions.fields) || null;
    if (fields) {
      var lines = [];
      Object.keys(fields).forEach(function (field) {
        lines.push(field + ": " + [].concat(fields[field]).join(" "));
      });
      if (lines.length) return lines.join(" ");
    }
    return error.message || "Something went wrong.";
  }

  // One operation over HTTP. Django's login rotates the CSRF token, so the cookie is
  // read again for every request.
  function gql(query, variables) {
    return fetch(config.graphqlPath, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
        "X-CSRFToken": cookie("csrftoken"),
      },
      body: JSON.stringify({ query: query, variables: variables || {} }),
    })
      .then(function (response) {
        return response.json().catch(function () {
          throw new Error("The server answered " + response.status + ".");
        });
      })
      .then(function (body) {
        if (body.errors && body.errors.length) throw new Error(errorText(body.errors));
        return body.data;
      });
  }

  // --- The stream --------------------------------------------------------------------

  var stream = $("stream");
  var seen = new Set(); // cursors on screen: a replay never shows an item twice
  var lastCursor = config.startCursor;
  var client = null;
  var unsubscribe = null;
  var resubscribeTimer = null;
  var failures = 0;

  function setConnection(state, text) {
    var element = $("connection");
    element.dataset.state = state;
    element.textContent = text;
  }

  function formatTime(iso) {
    var date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function plural(count, one, many) {
    return count + " " + (count === 1 ? one : many);
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(activity) {
    var item = element("li", "activity");
    item.dataset.cursor = activity.cursor;
    item.dataset.kind = activity.kind;
    item.dataset.verb = activity.verb;

    var head = element("div", "activity-head");
    head.appendChild(element("span", "badge kind-" + activity.kind.toLowerCase(),
      KIND_LABELS[activity.kind] || activity.kind));
    if (activity.verb !== "CREATED") {
      head.appendChild(element("span", "badge verb", activity.verb.toLowerCase()));
    }
    if (activity.event && activity.event.visibility === "PRIVATE") {
      head.appendChild(element("span", "badge private", "private"));
    }
    var time = element("time", "time", formatTime(activity.occurredAt));
    time.dateTime = activity.occurredAt;
    time.title = new Date(activity.occurredAt).toLocaleString();
    head.appendChild(time);
    item.appendChild(head);

    item.appendChild(element("p", "activity-message", activity.message));
    var stats = activity.actor && activity.actor.stats;
    if (stats) {
      // The author's public posting stats when this happened (cached on the server).
      item.appendChild(element("p", "actor-stats", activity.actor.username + ": " +
        plural(stats.statusCount, "status", "statuses") + " · " +
        plural(stats.commentCount, "comment", "comments")));
    }

    if (activity.event) {
      // Shown only while signed in (see live.css), also for items received before.
      var reply = element("button", "link reply", "Reply");
      reply.type = "button";
      reply.setAttribute("aria-label", "Reply to: " + activity.message);
      reply.addEventListener("click", function () {
        startReply(activity.event.id, activity.message);
      });
      item.appendChild(reply);
    }
    return item;
  }

  function show(activity) {
    lastCursor = activity.cursor;
    if (seen.has(activity.cursor)) return;
    seen.add(activity.cursor);
    stream.insertBefore(render(activity), stream.firstChild); // newest on top
    while (stream.children.length > MAX_ITEMS) {
      seen.delete(stream.lastElementChild.dataset.cursor);
      stream.removeChild(stream.lastElementChild);
    }
    $("stream-empty").hidden = true;
  }

  function retryWait(retries) {
    // Exponential, capped at 10 s, with jitter so restarted servers are not stampeded.
    var delay = Math.min(500 * Math.pow(2, retries), 10000) + Math.random() * 500;
    return new Promise(function (resolve) {
      setTimeout(resolve, delay);
    });
  }

  function newClient() {
    var url = new URL(config.graphqlPath, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var pongTimer = null;
    var created = graphqlWs.createClient({
      url: url.toString(), // same origin: the handshake carries the session cookie
      retryAttempts: Infinity,
      retryWait: retryWait,
      shouldRetry: function () {
        return true; // also after a refused connection (server restarting)
      },
      keepAlive: 15000,
      on: {
        connecting: function (retrying) {
          setConnection("connecting", retrying ? "Reconnecting…" : "Connecting…");
        },
        connected: function () {
          failures = 0;
          setConnection("live", "Live");
        },
        closed: function () {
          if (created === client) setConnection("offline", "Offline: reconnecting…");
        },
        ping: function (received) {
          // A pong must follow our ping; else the socket is half-open: drop it and retry.
          if (!received) {
            clearTimeout(pongTimer);
            pongTimer = setTimeout(function () {
              created.terminate();
            }, 5000);
          }
        },
        pong: function (received) {
          if (received) clearTimeout(pongTimer);
        },
      },
    });
    return created;
  }

  function subscribe() {
    clearTimeout(resubscribeTimer);
    // graphql-ws sends this same payload object again on every retry, so updating
    // `after` as activities arrive makes each reconnection resume from the last cursor.
    var request = { query: ACTIVITY, variables: { after: lastCursor } };
    unsubscribe = client.subscribe(request, {
      next: function (result) {
        if (result.data && result.data.activity) {
          show(result.data.activity);
          request.variables.after = lastCursor;
        }
      },
      error: function (error) {
        // The server ended the subscription (e.g. SLOW_CONSUMER) or retrying gave up:
        // subscribe again from the last cursor after a pause.
        failures += 1;
        var message = Array.isArray(error) ? errorText(error) : "connection lost";
        setConnection("offline", "Interrupted (" + message + "): resuming…");
        resubscribeTimer = setTimeout(subscribe, Math.min(1000 * failures, 10000));
      },
      complete: function () {},
    });
  }

  // A new socket, authenticated by the current session cookie, resuming after lastCursor.
  function reconnect() {
    clearTimeout(resubscribeTimer);
    var old = client;
    client = newClient();
    if (unsubscribe) unsubscribe();
    if (old) old.dispose();
    subscribe();
  }

  // --- Account -----------------------------------------------------------------------

  function say(id, text, isError) {
    var node = $(id);
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  function showViewer() {
    var signedIn = Boolean(config.viewer);
    $("signed-in").hidden = !signedIn;
    $("signed-out").hidden = signedIn;
    $("composer").hidden = !signedIn;
    $("viewer-name").textContent = config.viewer || "";
    document.body.classList.toggle("signed-in", signedIn);
  }

  function busy(form, isBusy) {
    Array.prototype.forEach.call(form.elements, function (control) {
      control.disabled = isBusy;
    });
  }

  function signIn(username, password) {
    return gql(LOGIN, { u: username, p: password }).then(function (data) {
      config.viewer = data.login.user.username;
      showViewer();
      say("account-message", "");
      reconnect(); // the new socket sees what the signed-in user may see
    });
  }

  // An account form: run `action` with it, then clear it, or say what went wrong.
  function onAccountSubmit(formId, action) {
    $(formId).addEventListener("submit", function (event) {
      event.preventDefault();
      var form = event.currentTarget;
      busy(form, true);
      action(form)
        .then(function () {
          form.reset();
        })
        .catch(function (error) {
          say("account-message", error.message, true);
        })
        .finally(function () {
          busy(form, false);
        });
    });
  }

  onAccountSubmit("sign-in-form", function (form) {
    return signIn(form.elements.username.value, form.elements.password.value);
  });

  onAccountSubmit("sign-up-form", function (form) {
    var input = {
      username: form.elements.username.value,
      email: form.elements.email.value,
      password: form.elements.password.value,
    };
    return gql(SIGN_UP, { i: input }).then(function () {
      return signIn(input.username, input.password);
    });
  });

  $("sign-out").addEventListener("click", function () {
    gql(LOGOUT)
      .then(function () {
        window.location.reload(); // drops private items from the screen
      })
      .catch(function (error) {
        say("account-message", error.message, true);
      });
  });

  // --- Posting -----------------------------------------------------------------------

  var replyTo = null;

  function postKind() {
    return $("post-form").elements.kind.value;
  }

  function updateComposer() {
    var kind = postKind();
    $("post-text-label").textContent = kind === "comment" ? "Comment" : "Status";
    $("post-text").maxLength = LENGTHS[kind];
    if (kind !== "comment") cancelReply();
  }

  function startReply(eventId, message) {
    replyTo = eventId;
    $("post-form").elements.kind.value = "comment";
    updateComposer();
    $("reply-text").textContent = message;
    $("reply-target").hidden = false;
    $("post-text").focus();
  }

  function cancelReply() {
    replyTo = null;
    $("reply-target").hidden = true;
    $("reply-text").textContent = "";
  }

  Array.prototype.forEach.call($("post-form").elements.kind, function (radio) {
    radio.addEventListener("change", updateComposer);
  });
  $("reply-cancel").addEventListener("click", cancelReply);

  $("post-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.currentTarget;
    var text = form.elements.text.value;
    var visibility = form.elements.visibility.value;
    var posting =
      postKind() === "comment"
        ? gql(POST_COMMENT, { i: { body: text, targetId: replyTo, visibility: visibility } })
        : gql(POST_STATUS, { i: { status: text, visibility: visibility } });
    busy(form, true);
    say("post-message", "Posting…");
    posting
      .then(function () {
        form.elements.text.value = "";
        cancelReply();
        say("post-message", "Posted.");
      })
      .catch(function (error) {
        say("post-message", error.message, true);
      })
      .finally(function () {
        busy(form, false);
        form.elements.text.focus();
      });
  });

  showViewer();
  updateComposer();
  reconnect();
})();
