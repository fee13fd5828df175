"""Layer 2, the plan: bookings, timers and the wall-clock alarm, schedules."""
