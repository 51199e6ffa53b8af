# kdbench_csvsent.py
import csv
from pathlib import Path

from kdbench import hookimpl
from kdbench.api import DomainData, Example, KDBenchError, Task

SPLITS = ("train", "dev", "test")


class CsvSentiment(Task):
    name = "csvsent"
    description = "Binary sentiment read from CSV files, one folder per domain"
    version = "1"                        # bump when the data or the split changes (part of every cell's hash)
    domains = ("garden", "kitchen")
    labels = ("negative", "positive")    # an example's label is an index into this tuple
    revision = None                      # or the pinned upstream version you download (recorded per cell)

    def load(self):
        """Every domain's full train/dev/test splits; kdbench takes --fractions of train itself."""
        if self.data_dir is None:
            raise KDBenchError(f"{self.name}: no data: pass --data-dir DIR (or set KDBENCH_DATA_DIR) "
                               f"with DIR/{self.name}/<domain>/{{train,dev,test}}.csv")
        root = Path(self.data_dir) / self.name
        return {d: DomainData(d, *(self._read(root / d / f"{s}.csv", f"{d}/{s}") for s in SPLITS))
                for d in self.domains}

    def _read(self, path, prefix):
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise KDBenchError(f"{self.name}: cannot read {path}: {e}") from None
        examples = []
        for line, row in enumerate(rows, start=2):
            if not row.get("id") or not row.get("text") or row.get("label") not in self.labels:
                raise KDBenchError(f"{self.name}: {path}:{line}: expected columns id,text,label "
                                   f"with label one of {', '.join(self.labels)}")
            examples.append(Example(id=f"{prefix}/{row['id']}", text=row["text"],
                                    label=self.labels.index(row["label"])))
        return tuple(examples)


@hookimpl
def kdbench_register_tasks():
    return [CsvSentiment]
