"""What messaging announces to parts that build on it, so that the lower part need not import the higher one."""

from django.dispatch import Signal

# A trunk was saved through services.accounts.trunk_save (admin, API or wizard); sent with trunk=. The setup
# wizard (services/setup.py) refreshes the trunk's progress on it: a trunk set up by hand shows its steps done.
trunk_saved = Signal()
