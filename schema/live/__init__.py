"""Pulse's live engine: every live subscription, one core, a thin adapter per protocol.

- ``streams``: what a subscription field's resolver files (its arguments, decoded once).
- ``engine``: the replay-to-live seam, dedup, ordering, the visibility decision and the
  fault-isolated fan-out, for every transport.
- ``shapes``: one distinct subscription, executed once per entry and audience.
- ``hub``: the logs subscriptions stream from, and the process's listener on each.
- ``keepalive``: one task sending every connection its protocol's keep-alive.
- ``graphql_transport_ws``, ``graphql_ws``: the WebSocket subprotocols' adapters.
"""
