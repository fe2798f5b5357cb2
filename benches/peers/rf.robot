*** Comments ***
Robot Framework + SeleniumLibrary's side of the form-entry benchmark
(benches/form_entry.rs): N records into form.html, each confirmation read
back and checked; prints the loop time (the browser start is outside it).

    python3 -m robot --output NONE --report NONE --log NONE --variable N:100 rf.robot

*** Settings ***
Library    SeleniumLibrary

*** Variables ***
${N}            100
${PAGE}         ${CURDIR}/form.html
${CHROMIUM}     /usr/bin/chromium
${DRIVER}       /usr/bin/chromedriver

*** Test Cases ***
Enter Records
    ${flags}=    Set Variable    add_argument("--headless");add_argument("--no-sandbox");add_argument("--disable-gpu");add_argument("--disable-dev-shm-usage");add_argument("--disable-background-networking");add_argument("--disable-component-update");add_argument("--disable-sync");add_argument("--no-first-run")
    Open Browser    file://${PAGE}    chrome    options=binary_location="${CHROMIUM}";${flags}    service=executable_path="${DRIVER}"
    ${t0}=    Evaluate    time.time()    time
    FOR    ${i}    IN RANGE    ${N}
        Input Text    id:n    Name ${i}
        Input Text    id:c    Brussels
        Input Text    id:e    a${i}@x.be
        Click Button    xpath://button[text()='Save']
        Element Text Should Be    id:out    saved Name ${i}
    END
    ${dt}=    Evaluate    time.time()-${t0}    time
    Log To Console    robotframework: ${N} records in ${dt}s
    [Teardown]    Close Browser
