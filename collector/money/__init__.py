"""Money: the reports (what each worker earned in a period, reports.py, with its CSV
and routes), payouts split from them and the payments table. Imports the leaves, store/,
web/, identity/ and uptime/."""
