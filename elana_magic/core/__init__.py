"""The parts every measurement shares: the report base, units, statistics and notebook display."""
