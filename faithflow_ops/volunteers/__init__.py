"""Volunteer scheduling (issue 17): records (teams, people, events, needs, assignments,
blockouts), the reminder and gap-alert planners and appliers, and their pure rules."""
