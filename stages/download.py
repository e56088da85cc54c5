"""Stage download: fetch the four idx files, verify them, write data/raw/."""

from landscape.study.fetch import download
from landscape.study.params import load_params
from landscape.study.stage import RAW_DIR, run_stage


def main() -> None:
    data = load_params().data
    download(RAW_DIR, data.mirror, data.urls, data.sha256)
    print(f"verified {len(data.sha256)} files into {RAW_DIR}/FashionMNIST/raw")


if __name__ == "__main__":
    run_stage(main)
