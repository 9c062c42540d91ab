"""Stage `landmarks`: 68 points per frame and face track for every catalogued video (.pts, else dlib), and shot cuts."""
import argparse
from pathlib import Path

from pipeline.dataset.ingest import read_catalog, with_absolute_paths
from pipeline.dataset.landmarks import LandmarkParams, landmarks_for_video
from pipeline.dataset.parallel import map_videos
from pipeline.stage import load_params, replacing_dir, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", default="data/ingest/catalog.parquet")
    p.add_argument("--out", default="data/landmarks", help="one parquet per video + report.json")
    p.add_argument("--metrics", default="metrics/landmarks.json")
    return p


def main(args):
    setup_logging()
    params = load_params("landmarks", "compute")
    out = Path(args.out)
    videos = read_catalog(args.catalog)
    with replacing_dir(out) as work:  # the previous landmarks survive a failed run (disk full, a bug)
        results = map_videos(landmarks_for_video, [with_absolute_paths(v) for v in videos],
                             n_jobs=params["compute"]["n_jobs"],
                             backend=params["compute"].get("backend"), desc="landmarks",
                             out_dir=str(work.resolve()), params=LandmarkParams.from_params(params["landmarks"]))
        failed = [r for r in results if r["error"]]
        ok = [r for r in results if not r["error"]]
        no_face = [r["video_id"] for r in ok if r["frames_no_face"] == r["frames"]]
        write_json(work / "report.json", {"failed": [{"video_id": r["video_id"], "reason": r["error"]}
                                                     for r in failed], "videos_without_face": no_face,
                                          # annotation files not trusted (that frame fell back to dlib)
                                          "pts_rejected": [{"video_id": r["video_id"], **x}
                                                           for r in ok for x in r["pts_rejected"]],
                                          # face tracks and shot cuts (first frame of each new shot) per video
                                          # held frames: repeat share, mean hold, cadence (pipeline/dataset/holds.py)
                                          "videos": {r["video_id"]: {"tracks": r["tracks"], "cuts": r["cut_frames"],
                                                                     "holds": r["holds"]} for r in ok}})
    metrics = {"videos_failed": len(failed), "videos_without_face": len(no_face),
               "tracks": int(sum(r["tracks"] for r in ok)), "cuts": int(sum(r["cuts"] for r in ok)),
               "pts_rejected": int(sum(len(r["pts_rejected"]) for r in ok))}
    for key in sorted({k for r in ok for k in r if k.startswith("frames")}):  # frames_repeated among them
        metrics[key] = int(sum(r[key] for r in ok))
    write_json(args.metrics, metrics)
    print(f"landmarks: {len(ok)} videos, {metrics.get('frames', 0)} frames, "
          f"{metrics.get('frames_no_face', 0)} without a face, {len(failed)} failed -> {out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
