"""Change data capture from PostgreSQL: pgoutput over a logical replication slot.

``reader.ChangeReader`` reads windows of whole transactions as per-table Arrow batches;
``protocol`` knows the pgoutput messages (the decoder kernels import it, so this package
imports nothing eagerly); ``relations`` maps a Relation message to the batches' columns.
"""
