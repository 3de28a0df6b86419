"""`audioscene report`: the paper's Tables 2–4 and Figure 2 regenerated from trained runs, with
bootstrap confidence intervals, the paper's numbers beside each row and the provenance of every
number.

    audioscene report --runs "B+att=runs/b_att" A=runs/a --eval-data data/eval -o report/

writes `report/report.md`, `report/index.html` (one self-contained page), `report/table2.csv` and
`report/provenance.json`. The package, in the order data flows:

- `paper`: the paper's published numbers, typed once;
- `tagging`: Table 2's rows from runs (`evaluate.evaluate_run` + bootstrap intervals);
- `segmentation`: Tables 3–4 and Figure 2 from taggers' frame outputs, runs side by side (DCASE 2018
  task 4, or two folders with strong labels);
- `tables`, `figures`: the tables as blocks and the figures as PNGs;
- `document`: blocks written as Markdown and as an HTML page;
- `builder`: the command (inputs checked first, the folder swapped in whole).
"""

from .builder import ReportRequest, build, check_inputs, is_report_folder, write
from .document import Figure, Heading, Paragraph, Table, markdown_table, to_html, to_markdown
from .figures import figure2, plot_activations, plot_logmel
from .segmentation import FigureChoice, dcase_segmentation, detection_summary, folder_segmentation, segmentation
from .tables import Table2Row, event_summary, table2, table3, table4, tuning_table, write_per_class_csv
from .tagging import table2_rows

__all__ = ["Figure", "FigureChoice", "Heading", "Paragraph", "ReportRequest", "Table", "Table2Row", "build", "check_inputs",
           "dcase_segmentation", "detection_summary", "event_summary", "folder_segmentation", "figure2", "is_report_folder", "markdown_table", "plot_activations",
           "plot_logmel", "segmentation", "table2", "table2_rows", "table3", "table4", "to_html", "to_markdown",
           "tuning_table", "write", "write_per_class_csv"]
