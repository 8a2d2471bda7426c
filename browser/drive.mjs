// Opens URL in Debian's headless Chromium (playwright-core) and prints the page's outcome
// (window.outcome) as one JSON line, with every failed request the page saw (CORS failures show
// here). Bounded by TIMEOUT seconds (default 120).
//   node drive.mjs URL [TIMEOUT]
import { chromium } from "playwright-core";

const [url, timeout = "120"] = process.argv.slice(2);
if (!url) {
  process.stderr.write("usage: node drive.mjs URL [TIMEOUT]\n");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  const failed = [];
  const console_ = [];
  page.on("requestfailed", (r) => failed.push(`${r.method()} ${r.url().split("?")[0]}: ${r.failure()?.errorText}`));
  page.on("console", (m) => console_.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(() => window.outcome !== undefined, null, { timeout: Number(timeout) * 1000 });
  const outcome = await page.evaluate(() => window.outcome);
  process.stdout.write(JSON.stringify({ ...outcome, failed, console: console_ }) + "\n");
} finally {
  await browser.close();
}
