"""Durable jobs in the metadata database: ``context`` (what a handler sees), ``queue`` (every database
verb: enqueue, claim, fenced heartbeat and finish, stall recovery, cancel, prune), ``worker`` (the threads
that run handlers, in the web process or in ``twinbase worker`` processes)."""
