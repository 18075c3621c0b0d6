// Pulse's live page: sign in, post, and watch the activity stream update live.
// Mutations go over HTTP (session cookie + X-CSRFToken); the stream is the `activity`
// subscription over the vendored graphql-ws client. A signed-in viewer also gets, on
// the same socket, the `notifications` subscription (the unread badge and the list)
// and the `presence` subscription ("Online now"); anonymous viewers send neither.
// User text is only ever set with textContent (the page's CSP enforces Trusted Types,
// so HTML sinks would throw).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("pulse-config").textContent);
  var MAX_ITEMS = 200;
  var LENGTHS = { status: 280, comment: 5000 };
  var KIND_LABELS = { USER_JOINED: "Joined", STATUS_CHANGE: "Status", COMMENT: "Comment" };
  var NOTIFICATION_LABELS = { MENTION: "Mention", COMMENT: "Reply" };
  var MAX_NOTIFICATIONS = 50;
  var STATS = "stats { statusCount commentCount lastPostedAt }";

  var ACTIVITY = [
    "subscription Live($after: String) {",
    "  activity(after: $after) {",
    "    cursor kind verb message occurredAt eventId",
    "    actor { username " + STATS + " }",
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

  // Signed-in viewers only (the server refuses them anonymously; the page never asks).
  var NOTIFICATION = "id cursor kind read createdAt activity { message actor { username } }";
  var NOTIFICATIONS_LIVE = [
    "subscription Notifications($after: String) {",
    "  notifications(after: $after) { unreadCount notification { " + NOTIFICATION + " } }",
    "}",
  ].join("\n");
  var UNREAD = "query Unread { unreadNotificationCount }";
  var INBOX =
    "query Inbox { unreadNotificationCount notifications(first: 20) { edges { node { " +
    NOTIFICATION + " } } } }";
  var MARK_READ = "mutation MarkRead($upTo: String) { markNotificationsRead(upTo: $upTo) }";
  var USER = "id username lastSeenAt " + STATS;
  var ONLINE = "query Online { onlineUsers(first: 50) { " + USER + " } }";
  var PRESENCE = "subscription Presence { presence { online user { " + USER + " } } }";

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

  // "bob: 2 statuses · 1 comment" (public posting stats, cached on the server).
  function statsText(username, stats) {
    return username + ": " + plural(stats.statusCount, "status", "statuses") + " · " +
      plural(stats.commentCount, "comment", "comments");
  }

  // The same with when they last posted, for a name's tooltip.
  function statsTitle(username, stats) {
    var last = stats.lastPostedAt ? new Date(stats.lastPostedAt) : null;
    return statsText(username, stats) + " · " +
      (last && !isNaN(last) ? "last posted " + last.toLocaleString() : "no posts yet");
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
      var line = element("p", "actor-stats", statsText(activity.actor.username, stats));
      line.title = statsTitle(activity.actor.username, stats);
      item.appendChild(line);
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
          // After this socket's subscriptions are sent (they resume on the same
          // microtask): read the state they only report changes of.
          setTimeout(function () {
            if (created === client) refreshSignedIn();
          }, 0);
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
    stopSignedIn();
    var old = client;
    client = newClient();
    if (unsubscribe) unsubscribe();
    if (old) old.dispose();
    subscribe();
    startSignedIn();
  }

  // One query or mutation over the socket (ordered after the subscriptions sent before).
  function wsQuery(query, variables) {
    var on = client;
    return new Promise(function (resolve, reject) {
      var result = null;
      on.subscribe({ query: query, variables: variables || {} }, {
        next: function (value) {
          result = value;
        },
        error: function (error) {
          reject(new Error(Array.isArray(error) ? errorText(error) : "connection lost"));
        },
        complete: function () {
          if (on !== client) reject(new Error("superseded"));
          else if (!result) reject(new Error("No answer."));
          else if (result.errors && result.errors.length) reject(new Error(errorText(result.errors)));
          else resolve(result.data);
        },
      });
    });
  }

  // A signed-in subscription on the current socket, subscribed again after a pause if
  // the server ends it; `request` is sent again as is on every retry of the socket.
  function liveSubscription(request, onData) {
    var on = client;
    var stopped = false;
    var timer = null;
    var stop = null;
    var failed = 0;
    function start() {
      stop = on.subscribe(request, {
        next: function (result) {
          failed = 0;
          if (result.data) onData(result.data);
        },
        error: function () {
          if (stopped || on !== client) return;
          failed += 1;
          timer = setTimeout(start, Math.min(1000 * failed, 10000));
        },
        complete: function () {},
      });
    }
    start();
    return function () {
      stopped = true;
      clearTimeout(timer);
      if (stop) stop();
    };
  }

  // --- Notifications and presence (signed in only) ---------------------------------

  var stopNotifications = null;
  var stopPresence = null;
  var unreadCount = null;
  var notificationUpdates = 0; // subscription updates so far: newer than a query in flight
  var lastNotificationCursor = null;
  var shownNotifications = new Set(); // ids in the list
  var inboxBuffer = null; // notifications that arrived while the list was being read
  var inboxReloadTimer = null;
  var online = []; // users online now, most recently seen first
  var presenceBuffer = null; // transitions that arrived while onlineUsers was read

  function startSignedIn() {
    if (!config.viewer) return; // anonymous: none of these operations is sent
    var request = { query: NOTIFICATIONS_LIVE, variables: { after: lastNotificationCursor } };
    stopNotifications = liveSubscription(request, function (data) {
      var update = data.notifications;
      if (!update) return;
      notificationUpdates += 1;
      setUnread(update.unreadCount);
      if (update.notification) {
        // A retry of the socket resumes after the newest one (the server replays).
        lastNotificationCursor = request.variables.after = update.notification.cursor;
        if (inboxBuffer) inboxBuffer.push(update.notification);
        if (panelOpen()) prependNotification(update.notification);
      } else if (panelOpen()) {
        reloadInboxSoon(); // read (or removed) elsewhere: the rows' state changed
      }
    });
    stopPresence = liveSubscription({ query: PRESENCE, variables: {} }, function (data) {
      if (!data.presence) return;
      if (presenceBuffer) presenceBuffer.push(data.presence);
      applyPresence(data.presence);
    });
  }

  function stopSignedIn() {
    if (stopNotifications) stopNotifications();
    if (stopPresence) stopPresence();
    stopNotifications = stopPresence = null;
  }

  // On every (re)connection: what changed while no socket was open.
  function refreshSignedIn() {
    if (!config.viewer) return;
    if (panelOpen()) loadInbox();
    else loadUnread();
    loadOnline();
  }

  function setUnread(count) {
    unreadCount = count;
    $("unread-count").textContent = String(count);
    $("unread-badge").dataset.count = String(count);
    $("notifications-toggle").classList.toggle("has-unread", count > 0);
    document.title = (count > 0 ? "(" + count + ") " : "") + "Pulse · live activity";
  }

  function loadUnread() {
    var before = notificationUpdates;
    wsQuery(UNREAD)
      .then(function (data) {
        if (notificationUpdates === before) setUnread(data.unreadNotificationCount);
      })
      .catch(function () {}); // the next (re)connection reads it again
  }

  function panelOpen() {
    return !$("notifications-panel").hidden;
  }

  function setPanel(open) {
    $("notifications-panel").hidden = !open;
    $("notifications-toggle").setAttribute("aria-expanded", String(open));
    if (open) loadInbox();
  }

  function renderNotification(notification) {
    var item = element("li", "notification");
    item.dataset.id = notification.id;
    item.dataset.cursor = notification.cursor;
    var head = element("div", "activity-head");
    head.appendChild(element("span", "badge kind-" + notification.kind.toLowerCase(),
      NOTIFICATION_LABELS[notification.kind] || notification.kind));
    head.appendChild(element("span", "badge new", "new"));
    var time = element("time", "time", formatTime(notification.createdAt));
    time.dateTime = notification.createdAt;
    time.title = new Date(notification.createdAt).toLocaleString();
    head.appendChild(time);
    item.appendChild(head);
    item.appendChild(element("p", "activity-message", notification.activity.message));
    setRead(item, notification.read);
    return item;
  }

  function setRead(item, read) {
    item.classList.toggle("unread", !read);
    item.dataset.read = String(read);
  }

  function showNotificationsEmpty() {
    $("notifications-empty").hidden = $("notification-list").children.length > 0;
  }

  function renderInbox(notifications) {
    var list = $("notification-list");
    while (list.firstChild) list.removeChild(list.firstChild);
    shownNotifications.clear();
    notifications.forEach(function (notification) {
      shownNotifications.add(notification.id);
      list.appendChild(renderNotification(notification));
    });
    showNotificationsEmpty();
  }

  function prependNotification(notification) {
    if (shownNotifications.has(notification.id)) return;
    shownNotifications.add(notification.id);
    var list = $("notification-list");
    list.insertBefore(renderNotification(notification), list.firstChild); // newest on top
    while (list.children.length > MAX_NOTIFICATIONS) {
      shownNotifications.delete(list.lastElementChild.dataset.id);
      list.removeChild(list.lastElementChild);
    }
    showNotificationsEmpty();
  }

  function loadInbox() {
    clearTimeout(inboxReloadTimer);
    var before = notificationUpdates;
    var buffer = (inboxBuffer = []);
    wsQuery(INBOX)
      .then(function (data) {
        if (inboxBuffer !== buffer) return; // a newer read is on its way
        inboxBuffer = null;
        renderInbox(data.notifications.edges.map(function (edge) {
          return edge.node;
        }));
        buffer.forEach(prependNotification); // came while the list was read
        if (notificationUpdates === before) setUnread(data.unreadNotificationCount);
        say("notifications-message", "");
      })
      .catch(function (error) {
        if (inboxBuffer !== buffer) return;
        inboxBuffer = null;
        if (error.message !== "superseded") say("notifications-message", error.message, true);
      });
  }

  function reloadInboxSoon() {
    clearTimeout(inboxReloadTimer);
    inboxReloadTimer = setTimeout(loadInbox, 250);
  }

  $("notifications-toggle").addEventListener("click", function () {
    setPanel(!panelOpen());
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !panelOpen()) return;
    var focused = document.activeElement;
    setPanel(false);
    if (!focused || focused === document.body || $("notifications").contains(focused)) {
      $("notifications-toggle").focus();
    }
  });

  document.addEventListener("click", function (event) {
    if (panelOpen() && !$("notifications").contains(event.target)) setPanel(false);
  });

  var marking = false;
  $("mark-all-read").addEventListener("click", function (event) {
    var button = event.currentTarget;
    if (marking) return;
    var newest = $("notification-list").firstElementChild;
    // Up to the newest one shown (one that arrives meanwhile stays unread).
    var variables = newest ? { upTo: newest.dataset.cursor } : {};
    marking = true; // not `disabled`: that would take the focus away from the button
    button.setAttribute("aria-busy", "true");
    gql(MARK_READ, variables)
      .then(function (data) {
        Array.prototype.forEach.call($("notification-list").children, function (item) {
          setRead(item, true);
        });
        setUnread(data.markNotificationsRead);
        say("notifications-message", "");
      })
      .catch(function (error) {
        say("notifications-message", error.message, true);
      })
      .finally(function () {
        marking = false;
        button.removeAttribute("aria-busy");
      });
  });

  function renderOnline() {
    var list = $("online-list");
    while (list.firstChild) list.removeChild(list.firstChild);
    online.forEach(function (user) {
      var item = element("li", "online-user");
      item.dataset.username = user.username;
      item.appendChild(element("span", "presence-dot"));
      var name = element("span", "online-name", user.username);
      name.title = statsTitle(user.username, user.stats);
      item.appendChild(name);
      if (user.username === config.viewer) item.appendChild(element("span", "you", "(you)"));
      list.appendChild(item);
    });
    $("online-count").textContent = String(online.length);
    $("online-empty").hidden = online.length > 0;
  }

  function applyPresence(presence) {
    var user = presence.user;
    online = online.filter(function (other) {
      return other.id !== user.id;
    });
    if (presence.online) online.unshift(user); // most recently seen first
    renderOnline();
  }

  function loadOnline() {
    var buffer = (presenceBuffer = []);
    wsQuery(ONLINE)
      .then(function (data) {
        if (presenceBuffer !== buffer) return; // a newer read is on its way
        presenceBuffer = null;
        online = data.onlineUsers.slice();
        renderOnline();
        buffer.forEach(applyPresence); // transitions seen while it was read win
      })
      .catch(function () {
        if (presenceBuffer === buffer) presenceBuffer = null;
      });
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
    $("notifications").hidden = !signedIn;
    $("online").hidden = !signedIn;
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
