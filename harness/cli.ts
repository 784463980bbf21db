#!/usr/bin/env node
import { buildHarnessProgram } from './program.js';

void buildHarnessProgram().parseAsync(process.argv);
