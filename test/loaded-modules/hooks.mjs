/**
 * Module customization hooks (see ./register.mjs): appends the URL of each module being loaded to
 * the file given at registration. appendFileSync, so a line is written before the module runs and
 * nothing is lost when the process is killed.
 */
import { appendFileSync } from "node:fs";

let file = "";

export function initialize(data) {
  file = data.file;
}

export async function load(url, context, nextLoad) {
  appendFileSync(file, `${url}\n`);
  return nextLoad(url, context);
}
