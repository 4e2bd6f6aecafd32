"""A minimal LiveKit Agents worker written only against livekit-agents' public API (not lkplug's):
the dev server must dispatch it as the LiveKit server would. Run by test_agents_live.py as
``python agents_minimal_worker.py [AGENT_NAME]`` with LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET
set; prints on stderr ``registered WORKER_ID``, then ``job JOB_ID ROOM IDENTITY`` for each job it joins."""

from __future__ import annotations

import asyncio
import sys

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobRequest


def main() -> None:
    agent_name = sys.argv[1] if len(sys.argv) > 1 else ""
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,  # no job subprocesses on a small test machine
        num_idle_processes=0,
        load_threshold=1.0,
        load_fnc=lambda: 0.0,
        port=0,
        drain_timeout=5,
    )

    async def on_request(request: JobRequest) -> None:
        await request.accept(identity=f"minimal-{request.job.id}", name="minimal agent")

    @server.rtc_session(agent_name=agent_name, on_request=on_request)
    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
        print(
            "job", ctx.job.id, ctx.room.name, ctx.room.local_participant.identity, file=sys.stderr, flush=True
        )

    server.on(
        "worker_registered",
        lambda worker_id, info: print("registered", worker_id, file=sys.stderr, flush=True),
    )

    asyncio.run(server.run())


if __name__ == "__main__":
    main()
