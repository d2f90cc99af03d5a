"""Crons: schedules whose ticks create executions, exactly one per tick fleet-wide."""
