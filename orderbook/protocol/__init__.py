"""Facts of the venue's protocol: stream names, limits, times.  No I/O.

The lowest layer above :mod:`orderbook.errors`: everything that parses or
builds what goes over the wire imports its names and constants from here, so
each fact exists once.
"""
