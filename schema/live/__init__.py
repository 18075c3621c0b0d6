"""Pulse's live engine: every live subscription, one core, a thin adapter per protocol.

- ``streams``: what a subscription field's resolver files (its arguments, decoded once).
- ``engine``: the replay-to-live seam, dedup, ordering, the visibility decision and the
  fault-isolated fan-out, for every transport.
- ``shapes``: one distinct subscription, executed once per activity and audience.
- ``hub``: the process's listener on the activity log.
- ``keepalive``: one task sending every connection its protocol's keep-alive.
- ``graphql_transport_ws``, ``graphql_ws``: the WebSocket subprotocols' adapters.
"""
