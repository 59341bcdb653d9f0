"""Jobs: the store of long work's status, progress, result and owner, with its bounds and time to live.

The asyncio tasks that drive a job's work live at the HTTP edge (`service.http.job_runs`); no torch here.
"""
