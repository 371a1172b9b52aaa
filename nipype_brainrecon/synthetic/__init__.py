"""The project's synthetic-data facility: simulated BIDS datasets, generated stimuli and the
training of the shipped demo model. Public (``brainrecon-simulate``), but never imported by
production scoring code.
"""
